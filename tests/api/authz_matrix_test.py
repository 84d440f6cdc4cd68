#!/usr/bin/env python3
"""Authorization matrix and tenant isolation against a real ekmd (stdlib only).

Usage: authz_matrix_test.py EKMD SOURCE_DIR

The expected roles of every route are written below, independently of the C++ rule
(src/ekm/auth/authorization.cc): the table of docs/api.md "Authentication and roles". The test
fails when src/ekm/api/operations.cc has a route this table lacks (or the other way round), so a
new route cannot ship without a decided rule.
"""

import os
import re
import shutil
import sqlite3
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ekm_tokens import mint_token, request, setup_tokens  # noqa: E402
from ekmd_process import Ekmd, isolated_env  # noqa: E402

ADMIN, OWNER, KM, APP, AUDITOR = "admin", "owner", "key-manager", "app", "auditor"
READERS = {ADMIN, OWNER, KM, AUDITOR}

# name -> (kind, roles allowed). kind: open, any (any valid token), platform, workspace (read or
# check on {workspace}), wschange (a workspace-wide change), env (…/environments/{environment}/…)
EXPECTED = {
    "health": ("open", set()),
    "key_cache.stats": ("platform", {ADMIN}),
    "workspace.list": ("platform", READERS),
    "workspace.create": ("platform", {ADMIN}),
    "environment.list": ("workspace", READERS),
    "environment.create": ("wschange", {ADMIN, OWNER}),
    "data.encrypt": ("env", {APP}),
    "data.decrypt": ("env", {APP}),
    "data.rewrap": ("env", {APP}),
    "key.show": ("env", READERS),
    "key.policy": ("env", READERS),
    "environment.status": ("env", READERS),
    "repack.status": ("env", READERS),
    "scope.list": ("env", READERS),
    "key.history": ("env", READERS),
    "settings.show": ("env", READERS),
    "default_key.show": ("workspace", READERS),
    "key_policy.check": ("workspace", {ADMIN, OWNER, KM}),
    "key.set": ("env", {OWNER, KM}),
    "key.import_params": ("env", {OWNER, KM}),
    "key.import": ("env", {OWNER, KM}),
    "key.delete_material": ("env", {OWNER, KM}),
    "key.rotate": ("env", {OWNER, KM}),
    "repack.run": ("env", {OWNER, KM}),
    "data_keys.rotate": ("env", {OWNER, KM}),
    "settings.update": ("env", {OWNER, KM}),
    "default_key.set": ("wschange", {OWNER, KM}),
    "default_key.reset": ("wschange", {OWNER, KM}),
    "environment.shred": ("env", {OWNER}),
    "events.list": ("workspace", {ADMIN, OWNER, AUDITOR}),
    "token.create": ("tokens", {ADMIN, OWNER}),
    "token.list": ("tokens", {ADMIN, OWNER}),
    "token.revoke": ("tokens", {ADMIN, OWNER}),
    "token.get": ("tokens", {ADMIN, OWNER}),
    "token.show": ("any", {ADMIN, OWNER, KM, APP, AUDITOR}),
    "rotation.run_due": ("platform", {ADMIN}),
    # issue 5 part C: probes open, metrics the admin's (open with --metrics-unauthenticated).
    "ready": ("open", set()),
    "metrics": ("platform", {ADMIN}),
    # Part D.
    "workspace.show": ("workspace", READERS),
    "environment.show": ("env", READERS),
    "key.validate": ("env", {OWNER, KM}),
    "data.generate_data_key": ("env", {APP}),
    "data.encrypt_batch": ("env", {APP}),
    "data.decrypt_batch": ("env", {APP}),
    # Part B: a workspace's chain to its owner and auditors (and the admin); the platform chain
    # to the admin alone; the public key to whoever verifies.
    "audit.query": ("workspace", {ADMIN, OWNER, AUDITOR}),
    "audit.export": ("workspace", {ADMIN, OWNER, AUDITOR}),
    "audit.checkpoints.list": ("workspace", {ADMIN, OWNER, AUDITOR}),
    "audit.checkpoints.create": ("workspace", {ADMIN, OWNER, AUDITOR}),
    "platform_audit.query": ("platform", {ADMIN}),
    "platform_audit.export": ("platform", {ADMIN}),
    "platform_audit.checkpoints.list": ("platform", {ADMIN}),
    "platform_audit.checkpoints.create": ("platform", {ADMIN}),
    "audit.public_key": ("platform", {ADMIN, OWNER, AUDITOR}),
}

# A sample body per route (None: no body). Allowed callers may get any answer but 401/403.
BODIES = {
    "workspace.create": {"name": "made-by-matrix"},
    "environment.create": {"name": "made-by-matrix"},
    "data.encrypt": {"plaintext": "aGVsbG8="},
    "data.decrypt": {"ciphertext": "ekm1:AAAA"},
    "data.rewrap": {"ciphertext": "ekm1:AAAA"},
    "key_policy.check": {"policy": "{}"},
    "key.set": {},
    "key.import_params": {},
    "key.import": {},
    "data_keys.rotate": {"scopes": ["matrix"]},
    "settings.update": {},
    "default_key.set": {},
    "environment.shred": None,  # step one only: a confirmation, nothing destroyed
    "token.create": {"role": "auditor", "workspace": "acme"},  # the admin's: ROLE_BODIES
    "key.validate": {"provider": "platform", "key_id": "root"},
    "data.generate_data_key": {"scope": "matrix"},
    "data.encrypt_batch": {"items": [{"plaintext": "aGVsbG8="}]},
    "data.decrypt_batch": {"items": [{"ciphertext": "ekm1:AAAA"}]},
}
# Where a role's allowed call needs its own body: the admin creates admin tokens and first
# owners only (TOKEN_RULES below checks the rest of that rule).
ROLE_BODIES = {
    ("token.create", ADMIN): {"role": "admin", "expires_in_seconds": 600},
}
# POST routes sent without a body.
NO_BODY = {"environment.shred", "audit.checkpoints.create", "platform_audit.checkpoints.create",
           "rotation.run_due", "repack.run"}

failures = 0
passes = 0


def check(ok, what):
    global failures, passes
    if ok:
        passes += 1
    else:
        failures += 1
        print("FAIL: " + what)


def route_table(source_dir):
    text = open(os.path.join(source_dir, "src/ekm/api/operations.cc")).read()
    rows = re.findall(r'\{RouteId::k\w+,\s*"(\w+)",\s*"([^"]+)",\s*"([^"]+)"[,}]', text)
    return [(m, p, n) for m, p, n in rows]


def main():
    ekmd, source_dir = sys.argv[1], sys.argv[2]
    tmp = tempfile.mkdtemp(prefix="ekm-authz-")
    d = None
    try:
        data = os.path.join(tmp, "data")
        d = Ekmd(ekmd, data, os.path.join(tmp, "ekmd.log"), ["--rotation-check-interval", "0"],
                 isolated_env(tmp))
        url = d.url

        # The table is complete: every route of operations.cc has a decided rule, and no more.
        table = route_table(source_dir)
        names = {n for _, _, n in table}
        check(len(table) >= 30, "operations.cc rows found by the regex: %d" % len(table))
        for n in sorted(names - set(EXPECTED)):
            check(False, "route %s has no row in this test's table (decide its roles)" % n)
        for n in sorted(set(EXPECTED) - names):
            check(False, "this test expects route %s, which operations.cc lacks" % n)

        a = setup_tokens(url, data, "acme")
        b = setup_tokens(url, data, "globex")
        admin = a[ADMIN]
        for ws in ("acme", "globex"):
            for env in ("prod", "staging"):
                st, j, _ = request(url, "POST", "/v1/workspaces/%s/environments" % ws, admin,
                                   {"name": env})
                check(st == 201, "create %s/%s: %s %s" % (ws, env, st, j))
        owner = a[OWNER]  # a workspace's tokens are its owner's to create
        restricted = mint_token(url, owner, KM, "acme", ["staging"])[0]
        revoked, revoked_id = mint_token(url, owner, APP, "acme")
        check(request(url, "DELETE", "/v1/tokens/" + revoked_id, owner)[0] == 200, "revoke")
        expired, expired_id = mint_token(url, owner, APP, "acme")
        # Never used, so no node has it cached: move its expiry into the past in the store.
        db = sqlite3.connect(os.path.join(data, "ekm.db"))
        db.execute("UPDATE api_tokens SET expires_at = 1 WHERE id = ?", (expired_id,))
        db.commit()
        db.close()
        victim_id = mint_token(url, owner, AUDITOR, "acme")[1]  # revoked by the revoke rows

        def sample(method, path, name, ws="acme", env="prod", role=None):
            p = (path.replace("{workspace}", ws).replace("{environment}", env)
                 .replace("{id}", victim_id))
            body = ROLE_BODIES.get((name, role), BODIES.get(name))
            if body is None and method in ("POST", "PUT", "PATCH") and name not in NO_BODY:
                body = {}
            return p, body

        callers = {ADMIN: a[ADMIN], OWNER: a[OWNER], KM: a[KM], APP: a[APP], AUDITOR: a[AUDITOR]}
        # Each role against each route.
        for method, path, name in table:
            if name not in EXPECTED:
                continue
            kind, roles = EXPECTED[name]
            p, body = sample(method, path, name)
            for role, tok in callers.items():
                st, j, _ = request(url, method, p, tok, sample(method, path, name, role=role)[1])
                if kind == "open" or role in roles:
                    check(st not in (401, 403), "%s %s as %s: allowed, got %s %s"
                          % (method, p, role, st, j))
                    check(st < 500, "%s %s as %s: never a 5xx, got %s %s" % (method, p, role, st, j))
                else:
                    check(st == 403, "%s %s as %s: refused, got %s %s" % (method, p, role, st, j))
                    check(j is not None and j.get("error", {}).get("code") == "permission_denied",
                          "%s as %s: error code %s" % (name, role, j))
            # An environment-restricted key-manager (staging only) asking about prod.
            st, j, _ = request(url, method, p, restricted, body)
            allowed = kind == "open" or (KM in roles and kind in ("platform", "workspace", "any"))
            if allowed:
                check(st not in (401, 403), "%s as restricted km: allowed, got %s %s" % (name, st, j))
            else:
                check(st == 403, "%s as restricted km: refused, got %s %s" % (name, st, j))
            # Bad tokens: 401 with WWW-Authenticate (the open route answers anyway).
            for label, tok in (("expired", expired), ("revoked", revoked), ("none", None),
                               ("malformed", "ekm_nothex_short")):
                st, j, h = request(url, method, p, tok, body)
                if kind == "open":
                    check(st == 200, "%s with a %s token: %s" % (name, label, st))
                    continue
                check(st == 401, "%s with a %s token: want 401, got %s %s" % (name, label, st, j))
                check(h.get("WWW-Authenticate") == "Bearer", "%s %s: WWW-Authenticate" % (name, label))
        # The restricted token may use its own environment.
        st, _, _ = request(url, "GET", "/v1/workspaces/acme/environments/staging/key", restricted)
        check(st == 200, "restricted km on its environment: %s" % st)
        st, j, _ = request(url, "GET", "/v1/workspaces/acme/environments", restricted)
        check(st == 200 and [e["name"] for e in j["environments"]] == ["staging"],
              "restricted km lists only its environments: %s" % j)
        st, j, _ = request(url, "GET", "/v1/workspaces/acme/environments/staging", restricted)
        check(st == 200 and j.get("name") == "staging", "restricted km shows its environment: %s %s"
              % (st, j))
        # An environment-restricted auditor reads the audit records of its environments only and
        # cannot export the chain (the whole workspace's).
        r_aud = mint_token(url, owner, AUDITOR, "acme", ["staging"])[0]
        st, j, _ = request(url, "GET", "/v1/workspaces/acme/audit?environment=staging", r_aud)
        check(st == 200 and all(r["environment"] == "staging" for r in j["records"]),
              "restricted auditor, its environment's audit: %s %s" % (st, j))
        for q in ("", "?environment=prod"):
            st, j, _ = request(url, "GET", "/v1/workspaces/acme/audit" + q, r_aud)
            check(st == 403, "restricted auditor, audit%s: %s %s" % (q, st, j))
        st, j, _ = request(url, "GET", "/v1/workspaces/acme/audit/export", r_aud)
        check(st == 403, "restricted auditor, audit export: %s %s" % (st, j))
        # The admin is platform-wide: it sees that a workspace does not exist.
        st, j, _ = request(url, "GET", "/v1/workspaces/globex", admin)
        check(st == 200 and j.get("name") == "globex", "admin shows globex: %s %s" % (st, j))
        st, j, _ = request(url, "GET", "/v1/workspaces/no-such-workspace", admin)
        check(st == 404, "admin shows a missing workspace: %s %s" % (st, j))
        # Emergency replacement and shred: owner only.
        emergency = {"provider": "platform", "key_id": "root", "emergency": True, "reason": "x"}
        st, j, _ = request(url, "PUT", "/v1/workspaces/acme/environments/staging/key", a[KM],
                           emergency)
        check(st == 403 and "owner" in j["error"]["message"], "km emergency: %s %s" % (st, j))
        st, j, _ = request(url, "PUT", "/v1/workspaces/acme/environments/staging/key", a[OWNER],
                           emergency)
        check(st not in (401, 403), "owner emergency: %s %s" % (st, j))

        # The replacement period guards the replacements key-managers make: changing or resetting
        # it is the owner's, like the emergency path (issue 12); the other settings stay theirs.
        settings = "/v1/workspaces/acme/environments/staging/settings"
        for body in ({"replacement_period_seconds": 7200}, {"replacement_period_seconds": None}):
            st, j, _ = request(url, "PATCH", settings, a[KM], body)
            check(st == 403 and "needs the role owner" in j["error"]["message"],
                  "km PATCH %s: %s %s" % (body, st, j))
        st, j, _ = request(url, "PATCH", settings, a[KM], {"grace_period_seconds": 0})
        check(st == 200, "km PATCH grace_period_seconds: %s %s" % (st, j))
        st, j, _ = request(url, "PATCH", settings, a[OWNER], {"replacement_period_seconds": 7200})
        check(st == 200 and j["replacement_period_seconds"] == 7200,
              "owner PATCH replacement_period_seconds: %s %s" % (st, j))

        # Token custody (issue 12): no admin token may obtain a token that reads data. The
        # admin creates a workspace's owner only while it has no valid owner token; every other
        # role of a workspace is created by its owner; the admin cannot revoke owner tokens.
        for role in (APP, KM, AUDITOR):
            st, j, _ = request(url, "POST", "/v1/tokens", admin, {"role": role, "workspace": "acme"})
            check(st == 403 and "-r owner" in j["error"].get("hint", ""),
                  "admin creating a %s token: %s %s" % (role, st, j))
        st, j, _ = request(url, "POST", "/v1/tokens", admin, {"role": OWNER, "workspace": "acme"})
        check(st == 403 and "valid owner token" in j["error"]["message"],
              "admin creating a second acme owner: %s %s" % (st, j))
        owner2, owner2_id = mint_token(url, owner, OWNER, "acme")  # the owner may
        st, j, _ = request(url, "DELETE", "/v1/tokens/" + owner2_id, admin)
        check(st == 403, "admin revoking an owner token: %s %s" % (st, j))
        st, j, _ = request(url, "DELETE", "/v1/tokens/" + owner2_id, owner)
        check(st == 200, "owner revoking another owner token: %s %s" % (st, j))
        st, j, _ = request(url, "POST", "/v1/tokens", a[KM], {"role": APP, "workspace": "acme"})
        check(st == 403, "key-manager creating a token: %s %s" % (st, j))
        st, j, _ = request(url, "POST", "/v1/workspaces", admin, {"name": "initech"})
        check(st == 201, "create initech: %s" % st)
        st, j, _ = request(url, "POST", "/v1/tokens", admin, {"role": OWNER, "workspace": "initech"})
        check(st == 201, "admin creating the first initech owner: %s %s" % (st, j))

        # Tenant isolation: every workspace route on globex with acme's tokens is the same 403 as
        # for a workspace that does not exist.
        a_tokens = dict(callers)
        a_tokens["restricted"] = restricted
        del a_tokens[ADMIN]  # platform-wide by design
        for method, path, name in table:
            if "{workspace}" not in path:
                continue
            for role, tok in a_tokens.items():
                p_b, body = sample(method, path, name, ws="globex")
                p_x, _ = sample(method, path, name, ws="no-such-workspace")
                st_b, j_b, _ = request(url, method, p_b, tok, body)
                st_x, j_x, _ = request(url, method, p_x, tok, body)
                check(st_b == 403, "%s on globex as acme %s: %s %s" % (name, role, st_b, j_b))
                check(j_b == j_x, "%s as acme %s: globex and a missing workspace differ: %s vs %s"
                      % (name, role, j_b, j_x))
        # Lists from acme's tokens never show globex.
        for role in (OWNER, KM, AUDITOR):
            st, j, _ = request(url, "GET", "/v1/workspaces", a[role])
            check(st == 200 and [w["name"] for w in j["workspaces"]] == ["acme"],
                  "workspace list as acme %s: %s" % (role, j))
        st, j, _ = request(url, "GET", "/v1/tokens", a[OWNER])
        check(st == 200 and j["tokens"] and all(t["workspace"] == "acme" for t in j["tokens"]),
              "token list as acme owner: %s" % j)
        check(bool(j["tokens"]) and all("id" in t and "token" not in t for t in j["tokens"]),
              "token list shows no secret: %s" % j)
        st, j, _ = request(url, "GET", "/v1/tokens?workspace=globex", a[OWNER])
        check(st == 403, "acme owner listing globex tokens: %s" % st)
        # An acme owner cannot revoke a globex token: the same 403 as for an unknown id.
        b_id = mint_token(url, b[OWNER], APP, "globex")[1]
        st_b, j_b, _ = request(url, "DELETE", "/v1/tokens/" + b_id, a[OWNER])
        st_x, j_x, _ = request(url, "DELETE", "/v1/tokens/0123456789abcdef", a[OWNER])
        check(st_b == 403 and j_b == j_x, "revoke across workspaces: %s %s / %s" % (st_b, j_b, j_x))
        # A ciphertext of acme does not decrypt in globex.
        st, j, _ = request(url, "POST", "/v1/workspaces/acme/environments/prod/encrypt", a[APP],
                           {"plaintext": "c2VjcmV0"})
        check(st == 200, "acme encrypt: %s %s" % (st, j))
        ct = j["ciphertext"] if st == 200 else "ekm1:AAAA"
        st, j, _ = request(url, "POST", "/v1/workspaces/globex/environments/prod/decrypt", b[APP],
                           {"ciphertext": ct})
        check(400 <= st < 500 and st not in (401, 403), "acme ciphertext in globex: %s %s" % (st, j))
        st, j, _ = request(url, "POST", "/v1/workspaces/acme/environments/prod/decrypt", a[APP],
                           {"ciphertext": ct})
        check(st == 200 and j["plaintext"] == "c2VjcmV0", "acme decrypts its own: %s" % st)
        # Who am I.
        st, j, _ = request(url, "GET", "/v1/token", restricted)
        check(st == 200 and j["role"] == KM and j["environments"] == ["staging"], "who am I: %s" % j)
        # ekmd exits 0 on SIGTERM with a clean log; failures are audited, never with the
        # secret (the log is read once ekmd has written all of it).
        for problem in d.stop():
            check(False, problem)
        log = d.log_text()
        check("listening on" in log and "403" in log, "ekmd's log has its requests: %r" % log[-300:])
        check(admin[21:] not in log, "ekmd's log holds no token secret")
    finally:
        if d is not None and d.running():
            d.kill9()
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (passes, failures))
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
