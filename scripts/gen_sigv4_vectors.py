#!/usr/bin/env python3
"""Generates testdata/sigv4/vectors.json: SigV4 golden vectors computed by botocore.

botocore's SigV4Auth is the reference implementation every AWS SDK agrees with, so ekm's C++
signer (src/ekm/provider/aws/sigv4_signer.cc) must produce byte-identical canonical requests,
strings to sign and Authorization headers for each case here (sigv4_signer_test.cc checks it).

Deterministic: fixed credentials, and the clock is pinned by patching
botocore.auth.get_current_datetime, as botocore's own unit tests pin time.

    python3 scripts/gen_sigv4_vectors.py            # rewrites testdata/sigv4/vectors.json
    python3 scripts/gen_sigv4_vectors.py --check    # exits 1 if the checked-in file differs
"""

import argparse
import datetime
import json
import os
import sys
from unittest import mock

import botocore
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "testdata", "sigv4", "vectors.json")

# AWS's documented example keys (not real credentials).
AK = "AKIAIOSFODNN7EXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TEMP_AK = "ASIAIOSFODNN7EXAMPLE"
TEMP_SK = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"
TOKEN = ("IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQDexample+token/with+slashes"
         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==")

T_2024 = datetime.datetime(2024, 12, 20, 18, 6, 0)
T_MIDNIGHT = datetime.datetime(2025, 1, 1, 0, 0, 0)
T_EOD = datetime.datetime(2026, 2, 28, 23, 59, 59)

KMS_JSON = "application/x-amz-json-1.1"
FORM = "application/x-www-form-urlencoded; charset=utf-8"


def kms(name, description, target, body, region="us-east-1", host=None, token=False,
        when=T_2024, extra_headers=()):
    host = host or f"kms.{region}.amazonaws.com"
    headers = [("Host", host), ("Content-Type", KMS_JSON),
               ("X-Amz-Target", f"TrentService.{target}")] + list(extra_headers)
    return dict(name=name, description=description, method="POST", path="/", query=[],
                headers=headers, body=body, region=region, service="kms", token=token,
                when=when)


CASES = [
    kms("kms_encrypt", "KMS Encrypt with encryption context, long-term credentials",
        "Encrypt",
        '{"KeyId": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",'
        ' "Plaintext": "aGVsbG8=", "EncryptionContext": {"ekm:workspace": "acme",'
        ' "ekm:environment": "prod", "ekm:ek-version": "1"}}'),
    kms("kms_decrypt_session_token", "KMS Decrypt with temporary credentials (session token)",
        "Decrypt",
        '{"CiphertextBlob": "AQIDBAUGBwg=", "EncryptionContext": {"ekm:workspace": "acme"}}',
        token=True),
    kms("kms_generate_data_key_eu", "KMS GenerateDataKey in eu-west-1 with a session token",
        "GenerateDataKey", '{"KeyId": "alias/ekm", "KeySpec": "AES_256"}', region="eu-west-1",
        token=True),
    kms("kms_describe_key_cn", "KMS DescribeKey in the aws-cn partition", "DescribeKey",
        '{"KeyId": "arn:aws-cn:kms:cn-north-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab"}',
        region="cn-north-1", host="kms.cn-north-1.amazonaws.com.cn"),
    kms("kms_gov_rotation_status", "KMS GetKeyRotationStatus in us-gov-west-1",
        "GetKeyRotationStatus", '{"KeyId": "1234abcd-12ab-34cd-56ef-1234567890ab"}',
        region="us-gov-west-1"),
    kms("kms_empty_body", "KMS POST with an empty body (hash of the empty string)", "ListKeys",
        "", region="ap-southeast-2"),
    kms("kms_local_port", "KMS against a local endpoint: Host carries a non-default port",
        "Encrypt", '{"KeyId": "k", "Plaintext": "AA=="}', host="127.0.0.1:5055",
        when=T_MIDNIGHT),
    kms("kms_header_spaces", "header values with leading, trailing and inner runs of spaces "
        "and tabs; mixed-case names; a repeated header; unsigned user-agent",
        "Encrypt", '{"KeyId": "k", "Plaintext": "AA=="}', when=T_EOD,
        extra_headers=[("X-Amz-Meta-Note", "   a   b \t c   "), ("X-Custom", "1"),
                       ("x-custom", "  two  words "), ("User-Agent", "ekm/0.1 (test)"),
                       ("Connection", "keep-alive")]),
    dict(name="sts_get_caller_identity", description="STS query-form POST (form body)",
         method="POST", path="/", query=[],
         headers=[("Host", "sts.amazonaws.com"), ("Content-Type", FORM)],
         body="Action=GetCallerIdentity&Version=2011-06-15", region="us-east-1", service="sts",
         token=False, when=T_2024),
    dict(name="sts_assume_role_regional", description="STS AssumeRole, regional endpoint, "
         "encoded form body, session token", method="POST", path="/", query=[],
         headers=[("Host", "sts.eu-central-1.amazonaws.com"), ("Content-Type", FORM)],
         body="Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fekm"
              "&RoleSessionName=ekm-session&Version=2011-06-15",
         region="eu-central-1", service="sts", token=True, when=T_2024),
    dict(name="iam_get_query_encoding", description="GET with query parameters that need "
         "encoding: space, '/', '+', '=', '&', unicode, empty value, unsorted names",
         method="GET", path="/",
         query=[("Version", "2010-05-08"), ("Action", "ListUsers"),
                ("PathPrefix", "/division abc/sub+dept="), ("Marker", "a&b=c~d_e.f-g"),
                ("Unicode", "\u00fcber \u20ac"), ("Empty", "")],
         headers=[("Host", "iam.amazonaws.com")], body="", region="us-east-1", service="iam",
         token=False, when=T_2024),
    dict(name="get_repeated_query_names", description="repeated query names sort by value",
         method="GET", path="/", query=[("b", "2"), ("a", "z"), ("a", "y"), ("A", "x")],
         headers=[("Host", "example.amazonaws.com")], body="", region="us-west-2",
         service="service", token=False, when=T_2024),
    dict(name="path_space_unicode", description="path with a space and unicode, percent-"
         "encoded on the wire and so double-encoded in the canonical URI",
         method="GET", path="/2015-03-31/functions/my%20function/%C3%BCber%E2%82%AC/invocations",
         query=[], headers=[("Host", "lambda.us-east-1.amazonaws.com")], body="",
         region="us-east-1", service="lambda", token=False, when=T_2024),
    dict(name="path_dot_segments", description="path normalisation: '.', '..', '//' and a "
         "trailing slash", method="GET", path="/a/./b//c/../d/", query=[],
         headers=[("Host", "example.amazonaws.com")], body="", region="us-east-1",
         service="service", token=False, when=T_2024),
    dict(name="path_reserved_chars", description="path with characters kept or encoded: "
         "~ stays, '!', '$', '@', ':' and '%' are encoded", method="PUT",
         path="/~user/a!b$c@d:e%2Ff", query=[("x", "1")],
         headers=[("Host", "example.amazonaws.com"), ("Content-Type", "text/plain")],
         body="payload with \u00e9", region="sa-east-1", service="execute-api", token=True,
         when=T_EOD),
    dict(name="unsigned_payload_header", description="X-Amz-Content-SHA256: UNSIGNED-PAYLOAD "
         "replaces the payload hash", method="POST", path="/upload", query=[],
         headers=[("Host", "example.amazonaws.com"), ("X-Amz-Content-SHA256", "UNSIGNED-PAYLOAD")],
         body="not hashed", region="us-east-2", service="execute-api", token=False,
         when=T_2024),
]


class RecordingSigV4Auth(SigV4Auth):
    """SigV4Auth that keeps the canonical request and string to sign it computed."""

    def string_to_sign(self, request, canonical_request):
        self.recorded_canonical_request = canonical_request
        sts = super().string_to_sign(request, canonical_request)
        self.recorded_string_to_sign = sts
        return sts


def sign(case):
    if case["token"]:
        creds = Credentials(TEMP_AK, TEMP_SK, TOKEN)
    else:
        creds = Credentials(AK, SK)
    host = dict((k.lower(), v) for k, v in case["headers"])["host"]
    url = f"https://{host}{case['path']}"
    request = AWSRequest(method=case["method"], url=url, data=case["body"].encode("utf-8"),
                         params=list(case["query"]))
    for name, value in case["headers"]:
        request.headers[name] = value  # HTTPHeaders appends, so repeats are kept
    auth = RecordingSigV4Auth(creds, case["service"], case["region"])
    with mock.patch("botocore.auth.get_current_datetime", return_value=case["when"]):
        auth.add_auth(request)
    added = [["X-Amz-Date", request.headers["X-Amz-Date"]]]
    if case["token"]:
        added.append(["X-Amz-Security-Token", request.headers["X-Amz-Security-Token"]])
    added.append(["Authorization", request.headers["Authorization"]])
    when = case["when"].replace(tzinfo=datetime.timezone.utc)
    return {
        "name": case["name"],
        "description": case["description"],
        "method": case["method"],
        "path": case["path"],
        "query": [list(p) for p in case["query"]],
        "headers": [list(h) for h in case["headers"]],
        "body": case["body"],
        "access_key_id": creds.access_key,
        "secret_access_key": creds.secret_key,
        "session_token": creds.token,
        "region": case["region"],
        "service": case["service"],
        "unix_time": int(when.timestamp()),
        "expected": {
            "canonical_request": auth.recorded_canonical_request,
            "string_to_sign": auth.recorded_string_to_sign,
            "authorization": request.headers["Authorization"],
            "headers_to_add": added,
        },
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the checked-in file instead of writing it")
    args = parser.parse_args()
    doc = {
        "generator": "scripts/gen_sigv4_vectors.py",
        "botocore_version": botocore.__version__,
        "note": "AWS documentation example credentials; not real keys.",
        "cases": [sign(c) for c in CASES],
    }
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if args.check:
        with open(OUT, encoding="utf-8") as f:
            if f.read() != text:
                print(f"{OUT} differs from what botocore {botocore.__version__} computes",
                      file=sys.stderr)
                return 1
        print(f"{OUT}: {len(doc['cases'])} cases match botocore {botocore.__version__}")
        return 0
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {len(doc['cases'])} cases to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
