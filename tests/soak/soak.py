#!/usr/bin/env python3
"""Soak: multi-tenant load through one ekmd while the CMKs and ekmd itself are abused.

Usage: soak.py --ekm BIN --ekmd BIN --src DIR [--minutes N] [--tenants K] [--seed S]

Starts its own peers on 127.0.0.1 (moto with IAM checks, the fault proxy in front of it:
tests/peers/), one ekmd (--key-cache-ttl 2, --aws-call-timeout 1, --aws-call-deadline 3,
--key-replacement-period 0), K workspaces each with an environment on its own AWS KMS key. Then,
for N minutes, two client threads per tenant encrypt and decrypt (JSON single and batch), one
thread tries every tenant's ciphertexts as another tenant, and the chaos loop does one thing at
a time, at random:
  revoke   one tenant's CMK refuses (AccessDenied for its key only), 6 s, then access restored
           and `key validate`;
  outage   AWS KMS times out, answers 500, throttles or resets connections, for 5 s;
  rotate   EK and every DK of a tenant rotated;
  replace  a tenant's CMK replaced by its second key (a repack);
  crash    ekmd killed with -9 and started again on the same data directory.
--control is the harness's positive control: revocations are armed on the wrong key, and the
soak must then fail. Checked all along: every acknowledged ciphertext decrypts again (sampled while running, all of
them at the end), no decrypt crosses tenants, a revoked tenant is refused within TTL + 4 s (the
worst lag is reported), the only errors are the documented ones for what is going on (409 for a
revoked CMK, 503 + Retry-After during an outage, a refused connection while ekmd restarts), the
audit chain of every workspace verifies, and ekmd exits cleanly at the end. Prints a summary
table; exits 1 on any violation.
"""
import argparse
import base64
import collections
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "api"))
from ekm_tokens import mint_token, read_bootstrap_token  # noqa: E402
from ekmd_process import Ekmd, crash_report, isolated_env  # noqa: E402

TTL = 2
REVOKE_BOUND = TTL + 4      # seconds after a revocation by which every request is refused
GRACE = 6                   # seconds after an outage or a restore in which errors may linger


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Soak:
    def __init__(self, args):
        self.a = args
        self.rng = random.Random(args.seed)
        self.tmp = tempfile.mkdtemp(prefix="ekm-soak-")
        self.env = isolated_env(os.path.join(self.tmp, "home"))
        os.makedirs(self.env["HOME"])
        self.peers = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.ops = collections.Counter()
        self.errors = collections.Counter()
        self.violations = []
        self.acked = collections.defaultdict(list)  # tenant -> [(ciphertext, plaintext)]
        self.revoked_at = {}      # tenant -> time its CMK began refusing (absent: not revoked)
        self.restored_at = {}     # tenant -> time access came back
        self.first_refusal = {}   # tenant -> lag of the first refusal seen after revoked_at
        self.worst_lag = 0.0
        self.outage_until = 0.0   # 503s allowed until then
        self.restart_until = 0.0  # connection errors allowed until then
        self.url = None
        self.ekmd = None

    # --- peers -------------------------------------------------------------------------------
    def start_peers(self):
        py = sys.executable
        moto = shutil.which("moto_server", path=os.path.dirname(py) + os.pathsep +
                            os.environ.get("PATH", ""))
        port = free_port()
        log = open(os.path.join(self.tmp, "moto.log"), "w")
        self.peers.append(subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)],
                                           stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True, env=self.env))
        self.moto = "http://127.0.0.1:%d" % port
        for _ in range(200):
            try:
                urllib.request.urlopen(self.moto + "/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        setup = os.path.join(self.tmp, "setup.json")
        subprocess.run([py, os.path.join(self.a.src, "tests/peers/moto_setup.py"), "--endpoint",
                        self.moto, "--out", setup], check=True, env=self.env,
                       stdout=subprocess.DEVNULL)
        self.setup = json.load(open(setup))
        out = open(os.path.join(self.tmp, "proxy.out"), "w+")
        self.peers.append(subprocess.Popen(
            [py, os.path.join(self.a.src, "tests/peers/kms_fault_proxy.py"), "--upstream",
             self.moto, "--port", "0", "--setup", setup], stdout=out,
            stderr=open(os.path.join(self.tmp, "proxy.log"), "w"), start_new_session=True,
            env=self.env))
        for _ in range(200):
            out.seek(0)
            line = out.readline().strip()
            if line:
                self.proxy = "http://127.0.0.1:" + line
                break
            time.sleep(0.05)
        # Two keys per tenant (its CMK and the one a replacement moves to), made by the admin.
        admin = self.setup["users"]["ekm-admin"]
        env = dict(self.env, AWS_ACCESS_KEY_ID=admin["access_key_id"],
                   AWS_SECRET_ACCESS_KEY=admin["secret_access_key"])
        made = subprocess.run([py, "-c", """
import boto3, json, sys
kms = boto3.client("kms", endpoint_url=sys.argv[1], region_name="us-east-1")
print(json.dumps([kms.create_key(Description="soak %d" % i)["KeyMetadata"]["Arn"]
                  for i in range(int(sys.argv[2]))]))""", self.moto, str(2 * self.a.tenants)],
                              check=True, env=env, capture_output=True, text=True)
        arns = json.loads(made.stdout)
        self.keys = {t: [arns[2 * t], arns[2 * t + 1]] for t in range(self.a.tenants)}
        self.current_key = {t: 0 for t in range(self.a.tenants)}

    def fault(self, spec):
        self.control("/__fault__", spec)

    def clear(self, key=None):
        self.control("/__fault__/clear", {"key": key} if key else {})

    def control(self, path, body):
        req = urllib.request.Request(self.proxy + path, data=json.dumps(body).encode(),
                                     method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    # --- ekmd --------------------------------------------------------------------------------
    def start_ekmd(self):
        p = self.setup["users"]["ekm-platform"]
        env = dict(self.env, AWS_REGION="us-east-1", AWS_ENDPOINT_URL=self.proxy,
                   AWS_ACCESS_KEY_ID=p["access_key_id"],
                   AWS_SECRET_ACCESS_KEY=p["secret_access_key"])
        n = getattr(self, "starts", 0)
        self.starts = n + 1
        self.ekmd = Ekmd(self.a.ekmd, os.path.join(self.tmp, "data"),
                         os.path.join(self.tmp, "ekmd-%d.log" % n),
                         args=["--key-cache-ttl", str(TTL), "--aws-call-timeout", "1",
                               "--aws-call-deadline", "3", "--key-replacement-period", "0",
                               # as fast as the clients go: the per-token limit is not what
                               # this soaks (http_hardening_test checks it)
                               "--rate-limit", "1000000", "--rate-limit-burst", "1000000"],
                         env=env, name="ekmd (start %d)" % (n + 1))
        self.url = self.ekmd.url

    def call(self, method, path, token, body=None, timeout=30):
        """(status, json, headers); status 0 for a connection error."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": "Bearer " + token, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw, status, hdrs = r.read(), r.status, r.headers
        except urllib.error.HTTPError as e:
            raw, status, hdrs = e.read(), e.code, e.headers
        except OSError:
            return 0, None, {}
        try:
            return status, json.loads(raw) if raw else None, hdrs
        except ValueError:
            return status, None, hdrs

    def setup_tenants(self):
        admin = read_bootstrap_token(os.path.join(self.tmp, "data"))
        self.tokens = {}
        for t in range(self.a.tenants):
            ws = "tenant%d" % t
            st, j, _ = self.call("POST", "/v1/workspaces", admin, {"name": ws})
            assert st == 201, (st, j)
            owner = mint_token(self.url, admin, "owner", ws)[0]
            tok = {"owner": owner}
            for role in ("key-manager", "app", "auditor"):
                tok[role] = mint_token(self.url, owner, role, ws)[0]
            self.tokens[t] = tok
            st, j, _ = self.call("POST", "/v1/workspaces/%s/environments" % ws, owner,
                                 {"name": "prod"})
            assert st == 201, (st, j)
            st, j, _ = self.call("PUT", self.env_path(t, "/key"), tok["key-manager"],
                                 {"aws_kms_arn": self.keys[t][0]})
            assert st == 200, (st, j)

    def env_path(self, t, rest=""):
        return "/v1/workspaces/tenant%d/environments/prod%s" % (t, rest)

    # --- checks ------------------------------------------------------------------------------
    def violate(self, what):
        with self.lock:
            self.violations.append("%.1fs %s" % (time.time() - self.t0, what))

    def judge(self, t, op, started, status, j, hdrs):
        """Counts one outcome; a violation unless documented for what is going on."""
        now = time.time()
        code = (j or {}).get("error", {}).get("code", "") if isinstance(j, dict) else ""
        with self.lock:
            self.ops[op] += 1
            revoked = self.revoked_at.get(t)
            if status == 200:
                if revoked is not None and started > revoked + REVOKE_BOUND:
                    self.violations.append("%.1fs tenant%d %s succeeded %.1fs after its CMK "
                                           "was revoked" % (now - self.t0, t, op,
                                                            started - revoked))
                return True
            kind = "%s %s" % (status or "connection", code)
            self.errors[kind] += 1
            if status == 409 and code == "failed_precondition":
                if revoked is not None or now < self.restored_at.get(t, 0) + GRACE:
                    if revoked is not None and t not in self.first_refusal:
                        self.first_refusal[t] = now - revoked
                        self.worst_lag = max(self.worst_lag, now - revoked)
                    return False
            elif status == 503 and code == "unavailable":
                if not hdrs.get("Retry-After"):
                    self.violations.append("%.1fs 503 without Retry-After" % (now - self.t0))
                if now < self.outage_until + GRACE or now < self.restart_until + GRACE:
                    return False
            elif status == 0 and (now < self.restart_until or started < self.restart_until):
                return False
            self.violations.append("%.1fs tenant%d %s: unexpected %s: %s" % (
                now - self.t0, t, op, status or "connection error", json.dumps(j)[:300]))
            return False

    # --- clients -----------------------------------------------------------------------------
    def client(self, t):
        rng = random.Random(self.a.seed * 1000 + t * 7 + threading.get_ident() % 97)
        app = self.tokens[t]["app"]
        while not self.stop.is_set():
            started = time.time()
            if rng.random() < 0.5 or not self.acked[t]:
                pt = os.urandom(rng.randint(1, 512))
                body = {"plaintext": base64.b64encode(pt).decode(), "scope": "s%d" % rng.randint(0, 3)}
                st, j, h = self.call("POST", self.env_path(t, "/encrypt"), app, body)
                if self.judge(t, "encrypt", started, st, j, h):
                    with self.lock:
                        self.acked[t].append((j["ciphertext"], pt))
            elif rng.random() < 0.2:
                with self.lock:
                    sample = rng.sample(self.acked[t], min(5, len(self.acked[t])))
                body = {"items": [{"ciphertext": c} for c, _ in sample]}
                st, j, h = self.call("POST", self.env_path(t, "/decrypt/batch"), app, body)
                if st != 200 or not isinstance(j, dict) or "items" not in j:
                    self.judge(t, "decrypt batch", started, st, j, h)
                    continue
                # A batch answers 200 with each item's own outcome (a refusal is per item).
                for (c, pt), item in zip(sample, j["items"]):
                    ok = "plaintext" in item
                    if self.judge(t, "decrypt batch item", started, 200 if ok else 409, item, h):
                        if base64.b64decode(item["plaintext"]) != pt:
                            self.violate("tenant%d batch item decrypted to other bytes" % t)
            else:
                with self.lock:
                    c, pt = rng.choice(self.acked[t])
                st, j, h = self.call("POST", self.env_path(t, "/decrypt"), app, {"ciphertext": c})
                if self.judge(t, "decrypt", started, st, j, h):
                    if base64.b64decode(j["plaintext"]) != pt:
                        self.violate("tenant%d decrypted to other bytes" % t)

    def cross_tenant(self):
        rng = random.Random(self.a.seed + 99)
        while not self.stop.is_set():
            time.sleep(0.05)
            a, b = rng.sample(range(self.a.tenants), 2)
            with self.lock:
                if not self.acked[a]:
                    continue
                c, _ = rng.choice(self.acked[a])
            # b's own path and token with a's ciphertext; and b's token on a's path.
            for path, token in ((self.env_path(b, "/decrypt"), self.tokens[b]["app"]),
                                (self.env_path(a, "/decrypt"), self.tokens[b]["app"])):
                st, j, _ = self.call("POST", path, token, {"ciphertext": c})
                with self.lock:
                    self.ops["cross-tenant attempt"] += 1
                if st == 200:
                    self.violate("tenant%d's ciphertext decrypted as tenant%d" % (a, b))

    # --- chaos -------------------------------------------------------------------------------
    def chaos(self, action):
        t = self.rng.randrange(self.a.tenants)
        km = self.tokens[t]["key-manager"]
        with self.lock:
            self.ops["chaos " + action] += 1
        if action == "revoke":
            arn = self.keys[t][self.current_key[t]]
            # --control: the fault is armed for the tenant's other key, so the revocation never
            # takes effect and the soak must report it (the harness's own positive control).
            armed = self.keys[t][1 - self.current_key[t]] if self.a.control else arn
            self.fault({"target": "*", "kind": "AccessDeniedException", "count": -1,
                        "key": armed.rsplit("/", 1)[1]})
            with self.lock:
                self.revoked_at[t] = time.time()
            time.sleep(REVOKE_BOUND + 2)
            with self.lock:
                if t not in self.first_refusal:
                    self.violations.append("%.1fs tenant%d: no request was refused within "
                                           "%ds of its revocation" % (time.time() - self.t0, t,
                                                                      REVOKE_BOUND + 2))
            self.clear(armed.rsplit("/", 1)[1])
            with self.lock:
                del self.revoked_at[t]
                self.first_refusal.pop(t, None)
                self.restored_at[t] = time.time()
            st, j, _ = self.call("POST", self.env_path(t, "/key/validate"), km,
                                 {"aws_kms_arn": arn})
            if st != 200:
                self.violate("tenant%d: key validate after restore: %s %s" % (t, st, j))
        elif action == "outage":
            kind = self.rng.choice(["timeout", "KMSInternalException", "ThrottlingException",
                                    "reset"])
            with self.lock:
                self.outage_until = time.time() + 60
            self.fault({"target": "*", "kind": kind, "count": -1, "delay_ms": 2000})
            time.sleep(5)
            self.clear()
            for u in range(self.a.tenants):
                arn = self.keys[u][self.current_key[u]]
                self.call("POST", self.env_path(u, "/key/validate"),
                          self.tokens[u]["key-manager"], {"aws_kms_arn": arn})
            with self.lock:
                self.outage_until = time.time()
        elif action == "rotate":
            st, j, _ = self.call("POST", self.env_path(t, "/key/rotate"), km, {})
            st2, j2, _ = self.call("POST", self.env_path(t, "/data-keys/rotate"), km,
                                   {"all_scopes": True})
            if st not in (200, 201) or st2 not in (200, 201):
                self.violate("tenant%d rotate: %s %s / %s %s" % (t, st, j, st2, j2))
        elif action == "replace":
            nxt = 1 - self.current_key[t]
            st, j, _ = self.call("PUT", self.env_path(t, "/key"), km,
                                 {"aws_kms_arn": self.keys[t][nxt]})
            if st == 200:
                self.current_key[t] = nxt
            else:
                self.violate("tenant%d replace: %s %s" % (t, st, j))
        elif action == "crash":
            with self.lock:
                self.restart_until = time.time() + 60
            self.ekmd.kill9()
            report = crash_report(self.ekmd.log_text())
            if report:  # a sanitizer report or abort before the kill
                self.violate("%s: its log has a crash report: %s" % (self.ekmd.name, report))
            self.start_ekmd()
            with self.lock:
                self.restart_until = time.time()

    def verify_all(self):
        for t in range(self.a.tenants):
            app = self.tokens[t]["app"]
            bad = 0
            for c, pt in self.acked[t]:
                st, j, _ = self.call("POST", self.env_path(t, "/decrypt"), app, {"ciphertext": c})
                if st != 200 or base64.b64decode(j["plaintext"]) != pt:
                    bad += 1
            if bad:
                self.violate("tenant%d: %d of %d acknowledged ciphertexts do not decrypt at the "
                             "end" % (t, bad, len(self.acked[t])))
            run = subprocess.run([self.a.ekm, "--server", self.url, "audit", "verify", "-w",
                                  "tenant%d" % t], env=dict(self.env, EKM_TOKEN=self.tokens[t]["auditor"]),
                                 capture_output=True, text=True)
            if run.returncode != 0:
                self.violate("tenant%d: audit chain does not verify: %s" % (t, run.stdout + run.stderr))

    def run(self):
        self.start_peers()
        self.start_ekmd()
        self.setup_tenants()
        self.t0 = time.time()
        threads = [threading.Thread(target=self.client, args=(t,), daemon=True)
                   for t in range(self.a.tenants) for _ in range(2)]
        threads.append(threading.Thread(target=self.cross_tenant, daemon=True))
        for th in threads:
            th.start()
        end = self.t0 + self.a.minutes * 60
        actions = ["revoke", "outage", "rotate", "replace", "crash"]
        i = 0
        while time.time() < end:
            time.sleep(self.rng.uniform(1, 3))
            # Every kind early in a short run, then at random.
            action = actions[i] if i < len(actions) else self.rng.choice(actions)
            i += 1
            self.chaos(action)
        self.stop.set()
        for th in threads:
            th.join(60)
        self.clear()
        self.verify_all()
        problems = self.ekmd.stop()
        for p in problems:
            self.violate(p)
        return self.report()

    def report(self):
        elapsed = time.time() - self.t0
        print("\n==> soak: %.0f s, %d tenants, seed %d" % (elapsed, self.a.tenants, self.a.seed))
        print("%-34s %10s" % ("operation", "count"))
        for k, v in sorted(self.ops.items()):
            print("%-34s %10d" % (k, v))
        print("%-34s %10s" % ("error (documented for the moment)", "count"))
        for k, v in sorted(self.errors.items()):
            print("%-34s %10d" % (k, v))
        print("%-34s %10d" % ("acknowledged ciphertexts checked", sum(map(len, self.acked.values()))))
        print("%-34s %9.1fs (bound %ds)" % ("worst revocation lag", self.worst_lag, REVOKE_BOUND))
        print("%-34s %10d" % ("violations", len(self.violations)))
        shown = collections.Counter()
        for v in self.violations:
            kind = re.sub(r"[0-9.]+s\b", "N s", v.split(" ", 1)[1])[:70]
            shown[kind] += 1
            if shown[kind] <= 3:
                print("VIOLATION:", v)
        for kind, n in shown.items():
            if n > 3:
                print("VIOLATION: ... and %d more like %r" % (n - 3, kind))
        if sum(self.ops.values()) < 100:
            print("VIOLATION: fewer than 100 operations: the soak did not run")
            return 1
        return 1 if self.violations else 0

    def cleanup(self):
        if self.ekmd is not None and self.ekmd.running():
            self.ekmd.kill9()
        for p in self.peers:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except OSError:
                pass
        for p in self.peers:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        if self.a.keep:
            print("kept:", self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ekm", required=True)
    ap.add_argument("--ekmd", required=True)
    ap.add_argument("--src", required=True, help="the source tree (for tests/peers/)")
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--tenants", type=int, default=3)
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    ap.add_argument("--control", action="store_true",
                    help="self-test: revocations are armed on the wrong key, so the soak must "
                         "fail (exit 1) reporting them")
    a = ap.parse_args()
    soak = Soak(a)
    try:
        rc = soak.run()
    finally:
        soak.cleanup()
    sys.exit(rc)


if __name__ == "__main__":
    main()
