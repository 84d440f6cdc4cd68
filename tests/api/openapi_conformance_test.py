#!/usr/bin/env python3
"""docs/openapi.yaml checked against a real ekmd.

Walks every operation of the spec with valid requests (platform CMK; AWS KMS routes point at a
closed port on 127.0.0.1 and answer their documented 4xx/5xx), checks that each status is
documented and each JSON body matches its schema, and fails if an operation was not exercised.
Then a bad-input sweep on every operation: malformed JSON, a body over --max-body-size, a wrong
Content-Type, unknown names, no token: each the documented 4xx with the Error shape, never a
5xx; and, on a second ekmd with --rate-limit, the documented 429. Each request carries the token of a role its operation allows (x-ekm-roles; tokens from
tests/api/ekm_tokens.py). Last, no key this run saw (generate-data-key plaintexts, the root key,
import tokens, the API tokens it used or created) appears in ekmd's debug log or in any error
body.

  openapi_conformance_test.py EKMD_BINARY SPEC_YAML
Stdlib + python3-yaml + python3-jsonschema (Debian packages) only.
"""
import base64
import http.client
import json
import os
import re
import sys
import socket
import tempfile
import threading
import time

import jsonschema
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ekm_tokens import setup_tokens  # noqa: E402  (part A's helper: bootstrap admin + a token per role)
from ekmd_process import Ekmd, isolated_env  # noqa: E402

MAX_BODY = 64 * 1024
WS, PROD, DEV = "acme", "prod", "dev"
ROLE_PREFERENCE = ["owner", "key-manager", "app", "auditor", "admin"]
ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
failures = []
exercised = set()    # (METHOD, template) answered with a documented status
error_bodies = []    # every error body seen, for the key-bytes check
secrets = []         # every key or secret seen, as bytes


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


class Spec:
    def __init__(self, path):
        with open(path) as f:
            self.doc = yaml.safe_load(f)
        self.ops = {}  # (METHOD, template) -> operation
        for template, item in self.doc["paths"].items():
            for method, op in item.items():
                if method in ("get", "put", "post", "patch", "delete"):
                    self.ops[(method.upper(), template)] = op
        self.templates = [(re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", t) + "$"), t)
                          for t in self.doc["paths"]]

    def template_of(self, path):
        path = path.split("?")[0]
        for rx, t in sorted(self.templates, key=lambda x: x[1].count("{")):
            if rx.match(path):
                return t
        return None

    def response(self, op, status):
        r = op["responses"].get(str(status))
        if r and "$ref" in r:
            r = self.resolve(r["$ref"])
        return r

    def resolve(self, ref):
        node = self.doc
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        return node

    def validate(self, schema, instance):
        full = dict(schema)
        full["components"] = self.doc["components"]
        jsonschema.Draft202012Validator(full).validate(instance)


READ_TIMEOUT = 5  # ekmd --read-timeout: the stalled-body check waits this long


def start_ekmd(binary, tmp, extra=()):
    env = isolated_env(
        tmp,
        # AWS KMS and STS on a closed local port: AWS routes fail fast, offline.
        AWS_ENDPOINT_URL_KMS="http://127.0.0.1:9", AWS_ENDPOINT_URL_STS="http://127.0.0.1:9",
        AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
        AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", AWS_REGION="us-east-1")
    try:
        return Ekmd(binary, os.path.join(tmp, "data"), os.path.join(tmp, "ekmd.log"),
                    ["--log-level", "debug", "--max-body-size", str(MAX_BODY), "--read-timeout",
                     str(READ_TIMEOUT), "--aws-principal-arn",
                     "arn:aws:iam::999988887777:role/ekm-platform", *extra], env)
    except RuntimeError as e:
        raise SystemExit(str(e))


def stop_ekmd(ekmd):
    """SIGTERM: exit status 0 and no sanitizer report in its log (ekmd_process.Ekmd.stop)."""
    for problem in ekmd.stop():
        fail(problem)


class Client:
    def __init__(self, spec, port, tokens):
        self.spec, self.port, self.tokens = spec, port, tokens

    def raw(self, method, path, body=None, content_type="application/json", token=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {}
        if body is not None:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            if isinstance(body, str):
                body = body.encode()
            if content_type:
                headers["Content-Type"] = content_type
        if token:
            headers["Authorization"] = "Bearer " + token
        try:
            conn.request(method, path, body, headers)
            r = conn.getresponse()
            data = r.read()
            return r.status, r.getheader("Content-Type", ""), data
        except (ConnectionError, http.client.HTTPException) as e:
            return 0, "", str(e).encode()
        finally:
            conn.close()

    def token_for(self, op):
        roles = op.get("x-ekm-roles", [])
        for role in ROLE_PREFERENCE:
            if role in roles:
                return self.tokens[role], role
        return None, "open"

    def call(self, method, path, body=None, content_type="application/json", expect=None,
             role=None):
        """A request checked against the spec: the status is documented for the operation,
        a JSON body matches its schema. Sent with the token of `role`, by default of a role the
        operation allows. Returns (status, parsed JSON or raw bytes)."""
        template = self.spec.template_of(path)
        op = self.spec.ops.get((method, template))
        what = f"{method} {path}"
        if op is None:
            fail(f"{what}: no such operation in the spec")
            return 0, None
        token = self.tokens[role] if role else self.token_for(op)[0]
        status, ctype, data = self.raw(method, path, body, content_type, token)
        if status == 0 or status >= 500 and str(status) not in op["responses"]:
            fail(f"{what}: answered {status}: {data[:300]!r}")
            return status, None
        resp = self.spec.response(op, status)
        if resp is None:
            fail(f"{what}: status {status} is not documented: {data[:300]!r}")
            return status, None
        if expect is not None and status not in expect:
            fail(f"{what}: expected {sorted(expect)}, got {status}: {data[:300]!r}")
        exercised.add((method, template))
        media = ctype.split(";")[0].strip()
        content = resp.get("content", {})
        if media not in content:
            fail(f"{what}: {status} answered {media}, the spec says {list(content)}")
            return status, data
        if media != "application/json":
            return status, data
        try:
            parsed = json.loads(data)
        except ValueError:
            fail(f"{what}: {status} body is not JSON: {data[:200]!r}")
            return status, None
        if status >= 400:
            error_bodies.append(data)
        elif isinstance(parsed, dict) and isinstance(parsed.get("token"), str):
            secrets.append(parsed["token"].encode())  # a new API token: never in a log
        try:
            self.spec.validate(content[media]["schema"], parsed)
        except jsonschema.ValidationError as e:
            fail(f"{what}: {status} body does not match its schema: {e.message} at "
                 f"{list(e.absolute_path)}: {data[:300]!r}")
        return status, parsed


def b64(data):
    return base64.b64encode(data).decode()


def walk(c):
    """Every operation with valid requests, in an order that gives each what it needs.
    Returns a valid body per operation, for the unknown-names sweep."""
    E = f"/v1/workspaces/{WS}/environments/{PROD}"
    valid = {}

    def do(method, path, body=None, expect=None, **kw):
        t = c.spec.template_of(path)
        valid.setdefault((method, t), body)
        return c.call(method, path, body, expect=expect, **kw)

    do("GET", "/healthz", expect={200})
    do("GET", "/readyz", expect={200})
    _, m = do("GET", "/metrics", expect={200})
    if m is not None and b"# TYPE ekm_http_requests_total counter" not in m:
        fail(f"/metrics: not the exposition format: {m[:200]!r}")
    for role in ("admin", "owner", "key-manager", "app", "auditor"):
        _, me = c.call("GET", "/v1/token", expect={200}, role=role)
        if me and (me["role"] != role or me["workspace"] != ("" if role == "admin" else WS)):
            fail(f"GET /v1/token with the {role} token answered {me}")
    valid[("GET", "/v1/token")] = None
    c.call("GET", "/metrics", expect={403}, role="owner")

    do("POST", "/v1/workspaces", {"name": "other"}, expect={201})
    do("POST", "/v1/workspaces", {"name": "other"}, expect={409})
    do("GET", "/v1/workspaces", expect={200})
    _, first = do("GET", "/v1/workspaces?limit=1", expect={200}, role="admin")
    if first and "next_after" not in first:
        fail(f"GET /v1/workspaces?limit=1 with two workspaces: no next_after: {first}")
    if first and "next_after" in first:
        do("GET", "/v1/workspaces?limit=1&after=" + first["next_after"], expect={200}, role="admin")
    c.call("GET", "/v1/workspaces?limit=0", expect={400}, role="admin")
    do("GET", f"/v1/workspaces/{WS}", expect={200})
    do("GET", "/v1/key-cache", expect={200})
    for env in (PROD, DEV):
        do("POST", f"/v1/workspaces/{WS}/environments", {"name": env}, expect={201})
    do("GET", f"/v1/workspaces/{WS}/environments", expect={200})
    do("GET", E, expect={200})

    # API tokens (an owner manages its own workspace's)
    st, t = do("POST", "/v1/tokens", {"role": "app", "workspace": WS, "environments": [PROD],
                                     "description": "conformance", "expires_in_seconds": 3600},
              expect={201})
    t = t if st == 201 else None
    c.call("POST", "/v1/tokens", {"role": "admin"}, expect={403})
    c.call("POST", "/v1/tokens", {"role": "app", "workspace": "other"}, expect={403})
    c.call("POST", "/v1/tokens", {"role": "wizard", "workspace": WS}, expect={400})
    c.call("POST", "/v1/tokens", {"role": "owner"}, expect={400}, role="admin")  # no workspace
    c.call("POST", "/v1/tokens", {"role": "auditor", "workspace": WS}, expect={403},
           role="admin")  # a workspace's tokens are its owner's to create
    c.call("POST", "/v1/tokens", {"role": "admin", "expires_in_seconds": 600}, expect={201},
           role="admin")
    _, lst = do("GET", "/v1/tokens", expect={200})
    if lst and t and t["id"] not in [x["id"] for x in lst["tokens"]]:
        fail(f"GET /v1/tokens does not list the token just created: {lst}")
    if lst and any("token" in x for x in lst["tokens"]):
        fail("GET /v1/tokens shows a secret")
    c.call("GET", f"/v1/tokens?workspace={WS}", expect={200}, role="admin")
    if t:
        _, one = do("GET", f"/v1/tokens/{t['id']}", expect={200})
        if one and (one.get("id") != t["id"] or "token" in one or one.get("state") != "active"):
            fail(f"GET /v1/tokens/{{id}}: not the token, or a secret shown: {one}")
        _, r = do("DELETE", f"/v1/tokens/{t['id']}", expect={200})
        if r and r["state"] != "revoked":
            fail(f"DELETE /v1/tokens/{{id}}: the token is not revoked: {r}")
        st, _, _ = c.raw("GET", "/v1/token", token=t["token"])
        if st != 401:
            fail(f"a revoked token was answered {st}, not 401")
    c.call("DELETE", "/v1/tokens/0123456789abcdef", expect={403})   # owner: no existence leak
    c.call("DELETE", "/v1/tokens/0123456789abcdef", expect={404}, role="admin")
    c.call("GET", "/v1/tokens/0123456789abcdef", expect={403})   # the same for a read
    c.call("GET", "/v1/tokens/0123456789abcdef", expect={404}, role="admin")


    # data plane
    _, enc = do("POST", E + "/encrypt", {"plaintext": b64(b"hello"), "scope": "orders"},
                expect={200})
    ct = enc["ciphertext"] if enc else ""
    _, dec = do("POST", E + "/decrypt", {"ciphertext": ct}, expect={200})
    if dec and base64.b64decode(dec["plaintext"]) != b"hello":
        fail("decrypt did not return the plaintext")
    status, stream_ct = c.call("POST", E + "/encrypt?scope=files", b"x" * 200000,
                               content_type="application/octet-stream", expect={200})
    status, back = c.call("POST", E + "/decrypt", stream_ct or b"",
                          content_type="application/octet-stream", expect={200})
    if back != b"x" * 200000:
        fail("the streamed round trip did not return the plaintext")
    _, text_ct = c.call("POST", E + "/encrypt?format=text", b"text form",
                        content_type="application/octet-stream", expect={200})
    _, back = c.call("POST", E + "/decrypt", text_ct or b"", content_type="text/plain",
                     expect={200})
    if back != b"text form":
        fail("the text-form streamed round trip did not return the plaintext")

    items = [{"plaintext": b64(b"one")}, {"plaintext": b64(b"two"), "scope": "orders"},
             {"plaintext": "not base64!"}, {"plaintext": b64(b"four"), "scope": "bad scope!"}]
    _, r = do("POST", E + "/encrypt/batch", {"items": items}, expect={200})
    if r:
        ok = [("ciphertext" in i) for i in r["items"]]
        if ok != [True, True, False, False]:
            fail(f"encrypt/batch: per-item results wrong: {r}")
        cts = [i.get("ciphertext", "") for i in r["items"][:2]]
        _, d = do("POST", E + "/decrypt/batch",
                  {"items": [{"ciphertext": cts[0]}, {"ciphertext": "ekm1:garbage"},
                             {"ciphertext": cts[1]}]}, expect={200})
        if d:
            got = [base64.b64decode(i["plaintext"]) if "plaintext" in i else None
                   for i in d["items"]]
            if got != [b"one", None, b"two"] or "error" not in d["items"][1]:
                fail(f"decrypt/batch: per-item results wrong: {d}")
    status, r = c.call("POST", E + "/encrypt/batch",
                       {"items": [{"plaintext": "AA=="}] * 1001}, expect={400})
    if r and "1000" not in r.get("error", {}).get("message", ""):
        fail(f"a batch of 1001 items: the error does not name the limit: {r}")
    c.call("POST", E + "/decrypt/batch", {"items": []}, expect={400})

    _, k = do("POST", E + "/generate-data-key", {"scope": "blobs"}, expect={200})
    if k:
        key = base64.b64decode(k["plaintext"])
        secrets.append(key)
        if len(key) != 32:
            fail(f"generate-data-key: {len(key)} bytes, not 32")
        _, d = c.call("POST", E + "/decrypt", {"ciphertext": k["ciphertext"]}, expect={200})
        if d and base64.b64decode(d["plaintext"]) != key:
            fail("decrypt of a generated data key did not return its plaintext")
    _, k = c.call("POST", E + "/generate-data-key", {"bytes": 16, "plaintext": False},
                  expect={200})
    if k and "plaintext" in k:
        fail("generate-data-key with plaintext false answered the plaintext")
    _, k = c.call("POST", E + "/generate-data-key", {"bytes": 64}, expect={200})
    if k:
        secrets.append(base64.b64decode(k["plaintext"]))
    for bad in ({"bytes": 8}, {"bytes": 65}, {"bytes": "32"}, {"plaintext": "no"}):
        c.call("POST", E + "/generate-data-key", bad, expect={400})
    do("POST", E + "/rewrap", {"ciphertext": ct}, expect={200})

    # the CMK
    do("GET", E + "/key", expect={200})
    do("GET", E + "/key/policy", expect={200})
    policy = json.dumps({"Version": "2012-10-17", "Statement": []})
    do("POST", f"/v1/workspaces/{WS}/key-policy/check", {"policy": policy}, expect={200})
    do("PUT", E + "/key", {"provider": "platform", "key_id": "root"}, expect={200})
    _, v = do("POST", E + "/key/validate", {"provider": "platform", "key_id": "root"},
              expect={200})
    if v and not v.get("ok"):
        fail(f"key/validate of the platform key did not pass: {v}")
    _, v = c.call("POST", E + "/key/validate", {"aws_kms_arn": ARN})
    if v and v.get("ok"):
        fail("key/validate of an unreachable AWS key passed")
    c.call("POST", E + "/key/validate", {"aws_kms_arn": "arn:aws:kms:nowhere"}, expect={200, 400})
    c.call("PUT", E + "/key", {"aws_kms_arn": ARN})  # AWS unreachable: a documented error
    do("GET", E + "/status", expect={200})
    do("GET", E + "/repack", expect={200})
    _, scopes = do("GET", E + "/scopes", expect={200})
    if scopes and not all("dk_version" in x for x in scopes.get("scopes", [])):
        fail(f"GET {E}/scopes: a scope without its DK version: {scopes}")
    _, history = do("GET", E + "/key/history?limit=5", expect={200})
    if history and not history.get("events"):
        fail(f"GET {E}/key/history after key changes: no events: {history}")
    c.call("GET", E + "/key/history?after=x", expect={400})
    _, rerun = do("POST", E + "/repack/run", None, expect={200})
    if rerun and rerun.get("state") not in ("none", "pending", "running", "waiting", "finished"):
        fail(f"POST {E}/repack/run: no repack state: {rerun}")
    do("POST", E + "/repack/run", {"now": True}, expect={400})
    _, p = do("POST", E + "/key/import-params", {"expires_in_seconds": 600}, expect={200})
    if p:
        secrets.append(p["import_token"].encode())
        do("POST", E + "/key/import", {"material": b64(b"\0" * 512),
                                       "import_token": p["import_token"]}, expect={400})
    do("DELETE", E + "/key/material", expect={404, 409})
    do("POST", E + "/key/rotate", None, expect={200})
    do("POST", E + "/data-keys/rotate", {"all_scopes": True}, expect={200})
    do("GET", E + "/settings", expect={200})
    do("PATCH", E + "/settings", {"key_cache_ttl_seconds": 600}, expect={200})
    do("GET", f"/v1/workspaces/{WS}/default-key", expect={200})
    do("PUT", f"/v1/workspaces/{WS}/default-key", {"aws_kms_arn": ARN})
    do("DELETE", f"/v1/workspaces/{WS}/default-key", expect={200})
    do("GET", f"/v1/workspaces/{WS}/events?limit=5", expect={200})

    D = f"/v1/workspaces/{WS}/environments/{DEV}"
    _, s = do("POST", D + "/shred", None, expect={200})  # step one (the sweep's valid body)
    if s:
        do("POST", D + "/shred", {"confirmation": s["confirmation"], "environment": DEV},
           expect={200})

    # the audit log: the workspace's chain (owner) and the platform chain (admin)
    for base in (f"/v1/workspaces/{WS}/audit", "/v1/audit"):
        _, r = do("GET", base + "?limit=3", expect={200})
        if r and (len(r["records"]) != 3 or "next_after" not in r):
            fail(f"GET {base}?limit=3: not a full page with next_after: {r}")
        if r and r.get("next_after"):
            c.call("GET", f"{base}?after={r['next_after']}&since=24h", expect={200})
        c.call("GET", base + "?limit=many", expect={400})
        c.call("GET", base + "?colour=red", expect={400})
        _, lines = do("GET", base + "/export", expect={200})
        if lines is not None:
            recs = [json.loads(x) for x in lines.decode().splitlines() if x]
            if not recs or any(not re.fullmatch(r"[0-9a-f]{64}", x.get("hash", "")) for x in recs):
                fail(f"GET {base}/export: not JSON lines of records: {lines[:200]!r}")
        c.call("GET", base + "/export?limit=1", expect={400})
        _, cp = do("POST", base + "/checkpoints", None, expect={201})
        c.call("POST", base + "/checkpoints", {}, expect={201})
        c.call("POST", base + "/checkpoints", {"seq": 1}, expect={400})
        _, cps = do("GET", base + "/checkpoints", expect={200})
        if cps is not None and len(cps["checkpoints"]) < 2:
            fail(f"GET {base}/checkpoints: the checkpoints just made are missing: {cps}")
    # the rotation schedule, run now (admin)
    _, rot = c.call("POST", "/v1/rotations/run", None, expect={200})
    if rot is not None and not isinstance(rot.get("failures"), list):
        fail(f"POST /v1/rotations/run: no failures list: {rot}")
    c.call("POST", "/v1/rotations/run", {"now": True}, expect={400})
    c.call("POST", "/v1/rotations/run", None, expect={403}, role="owner")
    c.call("GET", f"/v1/workspaces/{WS}/audit", expect={200}, role="auditor")
    c.call("GET", "/v1/audit", expect={403}, role="owner")
    _, pk = do("GET", "/v1/audit/public-key", expect={200})
    if pk and "BEGIN PUBLIC KEY" not in pk["public_key_pem"]:
        fail(f"GET /v1/audit/public-key: no PEM: {pk}")
    return valid


def sweep(c, ekmd_port, valid):
    """Bad input on every operation: never a 5xx, always the documented 4xx and Error."""
    def bad(method, path, body, content_type, expect, label, role=None, no_token=False):
        t = c.spec.template_of(path)
        op = c.spec.ops[(method, t)]
        token = None if no_token else c.tokens[role] if role else c.token_for(op)[0]
        status, ctype, data = c.raw(method, path, body, content_type, token)
        what = f"{label}: {method} {t}"
        if status not in expect:
            fail(f"{what}: expected {sorted(expect)}, got {status}: {data[:200]!r}")
            return
        if str(status) not in op["responses"]:
            fail(f"{what}: {status} is not documented")
        if status < 400:
            try:
                tok = json.loads(data).get("token") if ctype.startswith("application/json") else None
            except (ValueError, AttributeError):
                tok = None
            if isinstance(tok, str):
                secrets.append(tok.encode())
            return
        try:
            body = json.loads(data)
            c.spec.validate({"$ref": "#/components/schemas/Error"}, body)
            error_bodies.append(data)
        except (ValueError, jsonschema.ValidationError) as e:
            fail(f"{what}: not the Error shape ({e}): {data[:200]!r}")

    for (method, template), op in c.spec.ops.items():
        path = template.replace("{workspace}", WS).replace("{environment}", PROD).replace(
            "{id}", "0123456789abcdef")
        if op.get("x-ekm-roles") != ["open"]:
            bad(method, path, valid.get((method, template)), "application/json", {401},
                "no token", no_token=True)
        takes_json = "application/json" in op.get("requestBody", {}).get("content", {})
        if takes_json:
            bad(method, path, '{"name": ', "application/json", {400}, "malformed JSON")
            bad(method, path, "[1, 2]", "application/json", {400}, "not an object")
            bad(method, path, "<a/>", "application/xml", {415}, "wrong Content-Type")
        bad(method, path, "{" + " " * MAX_BODY + "}", "application/json", {413},
            "body over --max-body-size")
        body = valid.get((method, template))
        if isinstance(body, dict):
            # Each field of a valid body with a wrong type: a 400 naming it, never a 5xx.
            for field in body:
                for wrong in ({"x": 1}, [1], None if field != "name" else 3):
                    broken = dict(body, **{field: wrong})
                    # null may mean "absent" or "reset"; a batch answers a bad item on its own
                    ok = {400} | ({200, 201} if wrong is None or field == "items" else set())
                    bad(method, path, broken, "application/json", ok,
                        f"field {field!r} as {json.dumps(wrong)}")
        if "{workspace}" in template:
            body = valid.get((method, template))
            ws_path = template.replace("{workspace}", "no-such-ws").replace("{environment}",
                                                                           PROD)
            _, role = c.token_for(op)
            nf = {404} if role == "admin" else {403, 404}
            bad(method, ws_path, body if body is not None else None, "application/json", nf,
                "unknown workspace")
            # A workspace-scoped token is refused any other workspace before its name is read
            # (the same 403 whatever the name: no existence leak); admin gets the 400.
            admin = "admin" in op.get("x-ekm-roles", [])
            bad(method, template.replace("{workspace}", "BAD NAME!").replace(
                "{environment}", PROD).replace(" ", "%20"), body, "application/json",
                {400} if admin else {403}, "invalid workspace name",
                role="admin" if admin else None)
        if "{environment}" in template:
            body = valid.get((method, template))
            env_path = template.replace("{workspace}", WS).replace("{environment}",
                                                                   "no-such-env")
            bad(method, env_path, body, "application/json", {404}, "unknown environment")


def slow_body(port, token, result):
    """A body that stops arriving: ekmd drops the connection after its read timeout
    (--read-timeout) instead of holding it forever."""
    path = f"/v1/workspaces/{WS}/environments/{PROD}/encrypt"
    with socket.create_connection(("127.0.0.1", port), timeout=90) as s:
        s.sendall((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                   f"\r\nAuthorization: Bearer {token}\r\nContent-Length: 100\r\n\r\n"
                   '{"plain').encode())
        start = time.monotonic()
        data = b""
        try:
            while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pass
        result["elapsed"] = time.monotonic() - start
        result["response"] = data


def rate_limited(binary, spec, tmp):
    """With --rate-limit a token over its limit gets the documented 429 (Retry-After, the Error
    shape); /healthz, /readyz and /metrics are never limited."""
    ekmd = start_ekmd(binary, tmp, ["--rate-limit", "0.01", "--rate-limit-burst", "8"])
    try:
        tokens = setup_tokens(f"http://127.0.0.1:{ekmd.port}", ekmd.data_dir, WS)
        c = Client(spec, ekmd.port, tokens)
        # (setup_tokens spent 2 of the admin token's 8 and 3 of the owner's; the auditor's are
        # untouched)
        statuses = [c.raw("GET", "/v1/token", token=tokens["auditor"])[0] for _ in range(8)]
        conn = http.client.HTTPConnection("127.0.0.1", ekmd.port, timeout=30)
        conn.request("GET", "/v1/token", headers={"Authorization": "Bearer " + tokens["auditor"]})
        r = conn.getresponse()
        data, retry = r.read(), r.getheader("Retry-After", "")
        conn.close()
        if r.status != 429 or set(statuses) != {200} or not retry.isdigit() or int(retry) < 1:
            fail(f"--rate-limit: expected 8 times 200 then 429 with Retry-After, got {statuses}, "
                 f"{r.status} Retry-After {retry!r}: {data[:200]!r}")
        else:
            try:
                c.spec.validate(c.spec.response(c.spec.ops[("GET", "/v1/token")], 429)["content"]
                                ["application/json"]["schema"], json.loads(data))
            except (KeyError, TypeError, ValueError, jsonschema.ValidationError) as e:
                fail(f"429: not documented or not its schema ({e}): {data[:200]!r}")
        for path in ("/healthz", "/readyz", "/metrics"):
            for _ in range(4):
                st, _, data = c.raw("GET", path, token=tokens["admin"])
                if st != 200:
                    fail(f"--rate-limit: GET {path} answered {st}: {data[:200]!r}")
                    break
    finally:
        stop_ekmd(ekmd)


def key_forms(key):
    forms = {key.hex(), key.hex().upper(), base64.b64encode(key).decode(),
             base64.urlsafe_b64encode(key).decode().rstrip("=")}
    if len(key) >= 16:
        forms.add(base64.b64encode(key).decode().rstrip("="))
    return {f for f in forms if len(f) >= 16}


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: openapi_conformance_test.py EKMD_BINARY SPEC_YAML")
    spec = Spec(sys.argv[2])
    with tempfile.TemporaryDirectory(prefix="ekm-openapi-") as tmp:
        ekmd = start_ekmd(sys.argv[1], tmp)
        try:
            tokens = setup_tokens(f"http://127.0.0.1:{ekmd.port}", ekmd.data_dir, WS)
            c = Client(spec, ekmd.port, tokens)
            valid = walk(c)
            for op in sorted(set(spec.ops) - exercised):
                fail(f"{op[0]} {op[1]}: not exercised with a documented status")
            slow = {}
            t = threading.Thread(target=slow_body, args=(ekmd.port, tokens["app"], slow))
            t.start()
            sweep(c, ekmd.port, valid)
            t.join()
            # The timeout closes the connection (documented in the spec's description);
            # meanwhile the sweep's requests were answered.
            if slow.get("response") or not READ_TIMEOUT - 1 <= slow.get("elapsed", 0) <= 60:
                fail(f"a stalled body: expected the connection closed after about "
                     f"{READ_TIMEOUT} s, got "
                     f"{slow.get('response', b'')[:60]!r} after {slow.get('elapsed', 0):.0f} s")
        finally:
            stop_ekmd(ekmd)
        root = open(os.path.join(ekmd.data_dir, "root.key"), "rb").read()
        secrets.append(root)
        stripped = root.strip()
        for decode in (bytes.fromhex, base64.b64decode):
            try:
                secrets.append(decode(stripped.decode()))
            except ValueError:
                pass
        for token in tokens.values():
            secrets.append(token.encode())
        log = open(ekmd.log_path).read()
        if "debug" not in log.lower() and len(log) < 200:
            fail("ekmd's log is nearly empty: the key check would prove nothing")
        bodies = b"\n".join(error_bodies).decode("utf-8", "replace")
        checked = 0
        for key in secrets:
            for form in key_forms(key):
                checked += 1
                if form in log:
                    fail(f"a key ({len(key)} bytes) appears in ekmd's log")
                if form in bodies:
                    fail(f"a key ({len(key)} bytes) appears in an error body")
        print(f"{len(spec.ops)} operations exercised; {len(error_bodies)} error bodies and "
              f"{len(log)} bytes of log checked for {checked} key forms")
    with tempfile.TemporaryDirectory(prefix="ekm-openapi-limit-") as tmp:
        rate_limited(sys.argv[1], spec, tmp)
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("PASS")


if __name__ == "__main__":
    main()
