#!/usr/bin/env python3
"""Prepares a fresh moto_server as the AWS KMS peer of ekm's tests, then switches IAM checks on.

Usage: moto_setup.py --endpoint URL [--ca-file F] --out FILE.json

Creates (with creds test/test while moto still lets anything through):
  users  ekm-platform    kms:Encrypt, kms:Decrypt, sts:AssumeRole on ekm-platform-role
         ekm-no-decrypt  kms:Encrypt only
         ekm-describe    kms:Encrypt, kms:Decrypt, kms:DescribeKey, kms:GetKeyRotationStatus
         ekm-admin       * on * (tests use it to change moto's state later)
         ekm-web-identity  sts:AssumeRoleWithWebIdentity only (kms_fault_proxy.py signs with it)
  roles  ekm-platform-role  trusts ekm-platform (sts:AssumeRole)
         ekm-web-role       trusts a web identity provider (sts:AssumeRoleWithWebIdentity)
         both allowed kms:Encrypt, kms:Decrypt, kms:DescribeKey, kms:GetKeyRotationStatus
  keys   main (alias/ekm-main), rotating (rotation on), disabled (DisableKey)
and writes every ARN and access key to FILE.json. Last it posts /moto-api/reset-auth with 0, so
from then on every request must be SigV4-signed by one of these users (moto's IAM checks).

IAM Resource is "*" everywhere because moto checks KMS actions against resource "*" only.
"""
import argparse
import json
import os
import sys
import urllib.request
import ssl

import boto3
from botocore.config import Config

REGION = "us-east-1"
KMS_ACTIONS_READ = ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey", "kms:GetKeyRotationStatus"]
OIDC_HOST = "oidc.ekm.test"


def policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(actions, resource="*"):
    return {"Effect": "Allow", "Action": actions, "Resource": resource}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", required=True, help="moto's URL, http(s)://127.0.0.1:PORT")
    ap.add_argument("--ca-file", default=None, help="CA bundle that verifies moto's TLS cert")
    ap.add_argument("--out", required=True, help="where to write the JSON description")
    args = ap.parse_args()

    # Never pick up the developer's own AWS configuration.
    for var in list(os.environ):
        if var.startswith("AWS_"):
            del os.environ[var]
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull

    session = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION)
    verify = args.ca_file if args.ca_file else True
    cfg = Config(retries={"max_attempts": 1, "mode": "standard"})

    def client(service):
        return session.client(service, endpoint_url=args.endpoint, verify=verify, config=cfg)

    iam, kms, sts = client("iam"), client("kms"), client("sts")
    account = sts.get_caller_identity()["Account"]
    out = {"endpoint": args.endpoint, "region": REGION, "account": account,
           "users": {}, "roles": {}, "keys": {}}

    # Roles first, so the platform user's policy can name its role's ARN.
    role_policy = policy(allow(KMS_ACTIONS_READ))
    platform_user_arn = f"arn:aws:iam::{account}:user/ekm-platform"
    oidc = iam.create_open_id_connect_provider(
        Url=f"https://{OIDC_HOST}", ClientIDList=["sts.amazonaws.com"],
        ThumbprintList=["0" * 40])
    oidc_arn = oidc["OpenIDConnectProviderArn"]
    trusts = {
        "ekm-platform-role": policy({"Effect": "Allow",
                                     "Principal": {"AWS": platform_user_arn},
                                     "Action": "sts:AssumeRole"}),
        # moto accepts any token and does not check this trust policy (it treats
        # AssumeRoleWithWebIdentity like AssumeRole); it is here so the set-up reads like AWS's.
        "ekm-web-role": policy({"Effect": "Allow",
                                "Principal": {"Federated": oidc_arn},
                                "Action": "sts:AssumeRoleWithWebIdentity",
                                "Condition": {"StringEquals": {
                                    f"{OIDC_HOST}:aud": "sts.amazonaws.com"}}}),
    }
    for name, trust in trusts.items():
        role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]
        iam.put_role_policy(RoleName=name, PolicyName=f"{name}-kms", PolicyDocument=role_policy)
        out["roles"][name] = {"arn": role["Arn"]}
    out["oidc_provider_arn"] = oidc_arn

    users = {
        "ekm-platform": policy(allow(["kms:Encrypt", "kms:Decrypt"]),
                               allow("sts:AssumeRole", out["roles"]["ekm-platform-role"]["arn"])),
        "ekm-no-decrypt": policy(allow(["kms:Encrypt"])),
        "ekm-describe": policy(allow(KMS_ACTIONS_READ)),
        "ekm-admin": policy(allow("*")),
        # Signs unsigned AssumeRoleWithWebIdentity calls in kms_fault_proxy.py (moto with auth on
        # fails unsigned requests).
        "ekm-web-identity": policy(allow("sts:AssumeRoleWithWebIdentity")),
    }
    for name, doc in users.items():
        user = iam.create_user(UserName=name)["User"]
        iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=doc)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        out["users"][name] = {"arn": user["Arn"], "access_key_id": key["AccessKeyId"],
                              "secret_access_key": key["SecretAccessKey"]}

    def create_key(description):
        md = kms.create_key(Description=description, KeySpec="SYMMETRIC_DEFAULT",
                            KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]
        return {"key_id": md["KeyId"], "arn": md["Arn"]}

    for name in ("main", "rotating", "disabled"):
        k = create_key(f"ekm test key {name}")
        alias = f"alias/ekm-{name}"
        kms.create_alias(AliasName=alias, TargetKeyId=k["key_id"])
        k["alias"] = alias
        k["alias_arn"] = f"arn:aws:kms:{REGION}:{account}:{alias}"
        out["keys"][name] = k
    kms.enable_key_rotation(KeyId=out["keys"]["rotating"]["key_id"])
    # moto keeps serving Encrypt/Decrypt for a disabled key; DescribeKey shows KeyState=Disabled.
    kms.disable_key(KeyId=out["keys"]["disabled"]["key_id"])

    # Switch IAM checks on: from the next request on, everything must be signed by a real user.
    ctx = None
    if args.endpoint.startswith("https://"):
        ctx = ssl.create_default_context(cafile=args.ca_file)
    req = urllib.request.Request(args.endpoint.rstrip("/") + "/moto-api/reset-auth", data=b"0",
                                 headers={"Content-Type": "text/plain"}, method="POST")
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        if resp.status != 200:
            sys.exit(f"moto_setup: reset-auth answered HTTP {resp.status}")
    out["auth_enabled"] = True

    tmp = args.out + ".tmp"
    # It holds secret access keys (test-only, but still): owner-only.
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        json.dump(out, f, indent=2, sort_keys=True)
    os.replace(tmp, args.out)  # readers never see a half-written file


if __name__ == "__main__":
    main()
