"""API tokens for tests that run a real ekmd (stdlib only).

setup_tokens(base_url, data_dir, workspace) -> {"admin", "owner", "key-manager", "app",
"auditor"}: reads the bootstrap admin token ekmd wrote to <data_dir>/bootstrap-admin-token on
its first start, creates `workspace` (an existing one is fine) and mints one token of each
role for it, as a platform would: the admin the workspace's owner (it may create no other
role), the owner the others. The twin of setup_tokens in tests/integration/lib.sh.
"""

import json
import os
import time
import urllib.error
import urllib.request


def request(base_url, method, path, token=None, body=None, content_type="application/json"):
    """(status, parsed JSON or None, headers) of one request; never raises on HTTP errors."""
    data = None
    headers = {}
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = content_type
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    req = urllib.request.Request(base_url + path, data=data, method=method, headers=headers)
    try:
        # Generous: import-params generates an RSA-4096 key, whose time has a long tail, and
        # the suite runs tests side by side on 2 cores.
        with urllib.request.urlopen(req, timeout=120) as r:
            raw, status, hdrs = r.read(), r.status, r.headers
    except urllib.error.HTTPError as e:
        raw, status, hdrs = e.read(), e.code, e.headers
    except OSError as e:  # a timeout or a closed connection: say which request it was
        raise RuntimeError("%s %s: no answer from ekmd (%s)" % (method, path, e)) from e
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return status, parsed, hdrs


def read_bootstrap_token(data_dir, timeout=5.0):
    path = os.path.join(data_dir, "bootstrap-admin-token")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            with open(path) as f:
                return f.readline().strip()
        time.sleep(0.05)
    raise RuntimeError("ekmd wrote no " + path)


def mint_token(base_url, as_token, role, workspace, environments=None, expires_in=None):
    body = {"role": role, "description": "test"}
    if workspace:
        body["workspace"] = workspace
    if environments:
        body["environments"] = environments
    if expires_in is not None:
        body["expires_in_seconds"] = expires_in
    status, j, _ = request(base_url, "POST", "/v1/tokens", as_token, body)
    if status != 201:
        raise RuntimeError("creating a %s token for %s: HTTP %s %s" % (role, workspace, status, j))
    return j["token"], j["id"]


def setup_tokens(base_url, data_dir, workspace):
    admin = read_bootstrap_token(data_dir)
    status, j, _ = request(base_url, "POST", "/v1/workspaces", admin, {"name": workspace})
    if status not in (201, 409):
        raise RuntimeError("creating workspace %s: HTTP %s %s" % (workspace, status, j))
    tokens = {"admin": admin, "owner": mint_token(base_url, admin, "owner", workspace)[0]}
    for role in ("key-manager", "app", "auditor"):
        tokens[role] = mint_token(base_url, tokens["owner"], role, workspace)[0]
    return tokens
