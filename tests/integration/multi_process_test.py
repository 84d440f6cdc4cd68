#!/usr/bin/env python3
"""Several processes on one data directory (issue 13): two ekmd and `ekm --data-dir` processes
encrypt into ONE scope at the same time, and one ekmd is killed with kill -9 in the middle.

- Two ekmd (A and B, --nonce-lease-size 4096, so leases of the scope's DK interleave) serve the
  same data directory on two ports; client threads (an app token each, under the per-token
  limits) send encrypt/batch and single encrypts through both; beside them, `ekm --data-dir`
  processes encrypt into the same scope (leases of 16) and one rotates the scope's data key.
- When half the messages are acknowledged, B is killed with kill -9; its clients move to A (the
  survivor keeps serving) until B is started again (B2) on the same directory.

Then:
- no client ever got anything but a complete 200 (no 5xx, no "database is locked" or busy error,
  no per-item error); a connection error is allowed only from B between its kill and B2;
- every nonce, read from the envelope headers (docs/format.md §1, §3: prefix | message index),
  is unique per DK version, and so is every message index (the store's leases never overlap);
- every ciphertext a client received decrypts to its plaintext through ANOTHER process: A's
  through B2, B's and B2's through A, the CLI's through both, and some of each through
  `ekm --data-dir`;
- A and B2 exit 0 on SIGTERM with clean logs (no sanitizer report), and B's log (killed) has
  no crash report either; no `ekm` crashed.

  multi_process_test.py EKMD_BINARY EKM_BINARY
Environment: EKM_MULTIPROC_MESSAGES (default 30000) messages through the two ekmd; the long
run documented in docs/operations.md uses 1000000. EKM_MULTIPROC_KEEP=1 keeps the temp dir.
Stdlib only.
"""
import base64
import collections
import http.client
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "api"))
from ekmd_process import Ekmd, crash_report, ekm_problems, isolated_env  # noqa: E402

WS, ENV, SCOPE = "acme", "prod", "shared"
PATH = "/v1/workspaces/%s/environments/%s" % (WS, ENV)
BATCH = 500            # items per encrypt/batch (the API takes up to 1000)
THREADS_PER_EKMD = 3
CLI_LOOPS = 2
failures = []
lock = threading.Lock()


def fail(what):
    with lock:
        failures.append(what)
        if len(failures) <= 30:
            print("FAIL:", what, flush=True)


class State:
    """What the threads share: the URL of B while it runs, progress, the kill window."""

    def __init__(self, target):
        self.target = target
        self.acked = 0
        self.b_port = None
        self.killed_at = None     # time.monotonic() of kill -9 of B
        self.b2_at = None         # when B2 listened
        self.stop = threading.Event()
        self.half = threading.Event()
        self.lost_in_kill = 0     # requests to B cut by its kill (never acknowledged)
        self.b2_acked = 0
        self.cli_messages = 0
        self.rotated_at = None    # cli_messages when the CLI rotated the scope's DK

    def enough(self):
        """The target reached, and each part of the run has happened: B2 served, the CLI
        wrote messages before and after its rotation."""
        return (self.acked >= self.target and self.b2_acked >= 4 * BATCH and
                self.rotated_at is not None and self.cli_messages >= self.rotated_at + 4)

    def ack(self, n, origin):
        with lock:
            self.acked += n
            if origin == "B2":
                self.b2_acked += n
            if self.acked >= self.target // 2:
                self.half.set()


class Client(threading.Thread):
    """Encrypts into SCOPE through one ekmd (A, or B/B2 when `via_b`), batch after batch, and
    writes "origin plaintext ciphertext" lines to its file (the plaintext is f"{name}:{seq}")."""

    def __init__(self, name, token, state, a_port, via_b, out_path):
        super().__init__(name=name, daemon=True)
        self.token, self.state, self.a_port, self.via_b = token, state, a_port, via_b
        self.out = open(out_path, "w")
        self.seq = 0
        self.conn, self.conn_port = None, None
        self.requests = 0

    def pick(self):
        """Where the next request goes: B (or B2) while it runs, else A."""
        if self.via_b and self.state.b_port is not None:
            return self.state.b_port
        return self.a_port

    def origin(self, port):
        if port == self.a_port:
            return "A"
        return "B2" if self.state.b2_at is not None else "B"

    def post(self, port, path, body):
        if self.conn is None or self.conn_port != port:
            if self.conn is not None:
                self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            self.conn_port = port
        self.conn.request("POST", PATH + path, body=json.dumps(body),
                          headers={"Authorization": "Bearer " + self.token,
                                   "Content-Type": "application/json"})
        r = self.conn.getresponse()
        return r.status, r.read()

    def run(self):
        while not self.state.stop.is_set() and len(failures) < 30:
            single = self.requests % 10 == 9  # one request in ten a single encrypt
            n = 1 if single else BATCH
            seqs = list(range(self.seq, self.seq + n))
            self.seq += n
            items = [{"plaintext": base64.b64encode(b"%s:%d" % (self.name.encode(), s)).decode(),
                      "scope": SCOPE} for s in seqs]
            body, path = (items[0], "/encrypt") if single else ({"items": items}, "/encrypt/batch")
            port = self.pick()
            origin = self.origin(port)
            self.requests += 1
            try:
                status, raw = self.post(port, path, body)
            except (OSError, http.client.HTTPException) as e:
                self.conn = None
                if port != self.a_port and self.state.killed_at is not None:
                    with lock:
                        self.state.lost_in_kill += 1  # cut by kill -9: never acknowledged
                    continue
                fail("%s: %s to %s: connection error %r" % (self.name, path, origin, e))
                continue
            if status != 200:
                fail("%s: %s to %s answered HTTP %d: %s" % (self.name, path, origin, status,
                                                            raw[:300]))
                continue
            j = json.loads(raw)
            results = [j] if single else j.get("items", [])
            if len(results) != n:
                fail("%s: %s to %s: %d results for %d items" % (self.name, path, origin,
                                                                len(results), n))
                continue
            good = 0
            for s, item in zip(seqs, results):
                if "ciphertext" not in item or item.get("scope") != SCOPE:
                    fail("%s: %s to %s: item %d: %s" % (self.name, path, origin, s,
                                                        json.dumps(item)[:300]))
                    continue
                self.out.write("%s %s:%d %s\n" % (origin, self.name, s, item["ciphertext"]))
                good += 1
            self.state.ack(good, origin)
        self.out.close()
        if self.conn is not None:
            self.conn.close()


def cli_loop(k, ekm, data_dir, env, state, out_path):
    """`ekm --data-dir data-key generate` into SCOPE (a single-form message under the scope's
    DK: a leased nonce), one process per message, until the end; the first loop rotates the
    scope's data key once half the messages are in. Lines: "CLI b64:<key> <ciphertext>"."""
    i = 0
    with open(out_path, "w") as out:
        while not state.stop.is_set() and len(failures) < 30:
            if (k == 0 and state.rotated_at is None and state.half.is_set() and
                    state.cli_messages >= 4):
                r = subprocess.run([ekm, "--data-dir", data_dir, "key", "rotate", "-w", WS, "-e",
                                    ENV, "-s", SCOPE], capture_output=True, env=env, timeout=120)
                for p in ekm_problems(r, "ekm key rotate"):
                    fail(p)
                if r.returncode != 0:
                    fail("ekm key rotate -s %s: exit %d: %s" % (SCOPE, r.returncode, r.stderr))
                state.rotated_at = state.cli_messages
            r = subprocess.run([ekm, "--data-dir", data_dir, "data-key", "generate", "-w", WS,
                                "-e", ENV, "-s", SCOPE, "--bytes", "16", "--with-plaintext"],
                               capture_output=True, env=env, timeout=120)
            for p in ekm_problems(r, "ekm data-key generate"):
                fail(p)
            got = r.stdout.decode().split()
            if r.returncode != 0 or len(got) != 2 or not got[0].startswith("ekm1:"):
                fail("ekm --data-dir data-key generate: exit %d: %r %r" %
                     (r.returncode, r.stdout[-200:], r.stderr[-300:]))
                continue
            out.write("CLI b64:%s %s\n" % (got[1], got[0]))
            out.flush()
            i += 1
            with lock:
                state.cli_messages += 1
    return i


def parse_header(text):
    """(workspace, environment, scope, DK version, nonce) of a single-form envelope."""
    b64 = text[len("ekm1:"):]
    data = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
    if data[:4] != b"EKM\x01" or data[4] != 1:
        raise ValueError("not a single-form v1 envelope: %r" % data[:5])
    at, names = 5, []
    for _ in range(3):
        n = data[at]
        names.append(data[at + 1:at + 1 + n].decode())
        at += 1 + n
    (version,) = struct.unpack(">I", data[at:at + 4])
    return names[0], names[1], names[2], version, data[at + 4:at + 16]


def ekm_local(ekm, data_dir, env, *args, stdin=None):
    r = subprocess.run([ekm, "--data-dir", data_dir, *args], input=stdin, capture_output=True,
                       env=env, timeout=120)
    for p in ekm_problems(r, "ekm " + " ".join(args[:2])):
        fail(p)
    if r.returncode != 0:
        raise SystemExit("ekm %s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr))
    return r.stdout


def decrypt_all(port, token, lines):
    """Decrypts (origin, plaintext, ciphertext) lines through the ekmd on `port` in batches;
    returns how many decrypted to their plaintext."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    ok = 0
    for at in range(0, len(lines), 1000):
        chunk = lines[at:at + 1000]
        conn.request("POST", PATH + "/decrypt/batch",
                     body=json.dumps({"items": [{"ciphertext": c} for _, _, c in chunk]}),
                     headers={"Authorization": "Bearer " + token,
                              "Content-Type": "application/json"})
        r = conn.getresponse()
        raw = r.read()
        if r.status != 200:
            fail("decrypt/batch on port %d: HTTP %d: %s" % (port, r.status, raw[:300]))
            continue
        for (origin, pt, ct), item in zip(chunk, json.loads(raw)["items"]):
            got = base64.b64decode(item["plaintext"]) if "plaintext" in item else None
            if got != pt:
                fail("a ciphertext of %s does not decrypt on port %d: %s (%s…)" %
                     (origin, port, json.dumps(item)[:200], ct[:40]))
            else:
                ok += 1
    conn.close()
    return ok


def main():
    ekmd_bin, ekm = sys.argv[1], sys.argv[2]
    target = int(os.environ.get("EKM_MULTIPROC_MESSAGES", "30000"))
    tmp = tempfile.mkdtemp(prefix="ekm-multi-process-")
    env = isolated_env(tmp)
    data = os.path.join(tmp, "data")
    ekmds = []
    started = time.monotonic()
    try:
        ekm_local(ekm, data, env, "init")
        ekm_local(ekm, data, env, "workspace", "create", WS)
        ekm_local(ekm, data, env, "environment", "create", WS, ENV)
        # An app token per client thread (each under --max-requests-per-token and the rate
        # limit), and one for the checks.
        tokens = [ekm_local(ekm, data, env, "token", "create", "-w", WS, "-r", "app", "-e", ENV)
                  .decode().strip() for _ in range(2 * THREADS_PER_EKMD + 1)]
        lease = ["--nonce-lease-size", "4096", "--rotation-check-interval", "0"]
        a = Ekmd(ekmd_bin, data, os.path.join(tmp, "A.log"), lease, env, name="ekmd A")
        ekmds.append(a)
        b = Ekmd(ekmd_bin, data, os.path.join(tmp, "B.log"), lease, env, name="ekmd B")
        ekmds.append(b)
        state = State(target)
        state.b_port = b.port
        clients = []
        for i in range(2 * THREADS_PER_EKMD):
            via_b = i % 2 == 1
            clients.append(Client("%s%d" % ("b" if via_b else "a", i), tokens[i], state, a.port,
                                  via_b, os.path.join(tmp, "client%d.txt" % i)))
        cli_counts = [0] * CLI_LOOPS

        def run_cli(k):
            cli_counts[k] = cli_loop(k, ekm, data, env, state, os.path.join(tmp, "cli%d.txt" % k))
        cli_threads = [threading.Thread(target=run_cli, args=(k,), daemon=True)
                       for k in range(CLI_LOOPS)]
        for t in clients + cli_threads:
            t.start()

        # kill -9 of B in the middle; B2 on the same directory a moment later.
        while not state.half.wait(0.5):
            if not any(t.is_alive() for t in clients):
                break
        state.b_port = None
        state.killed_at = time.monotonic()
        b.kill9()
        acked_at_kill = state.acked
        time.sleep(0.5)  # A alone meanwhile
        b2 = Ekmd(ekmd_bin, data, os.path.join(tmp, "B2.log"), lease, env, name="ekmd B2")
        ekmds.append(b2)
        state.b2_at = time.monotonic()
        state.b_port = b2.port
        # A bound on the run, far above what it takes (a stalled process fails it, not ctest).
        load_limit = 240 + target // 2000
        deadline = time.monotonic() + load_limit
        while not state.enough() and len(failures) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        if not state.enough() and not failures:
            fail("the run did not complete in %d s: %d messages through ekmd, %d through B2, "
                 "%d by the CLI (rotation after %s)" % (load_limit, state.acked, state.b2_acked,
                                                       state.cli_messages, state.rotated_at))
        state.stop.set()
        for t in clients + cli_threads:
            t.join()
        load_seconds = time.monotonic() - started

        # Every nonce unique per DK version, and every message index (leases never overlap).
        lines = []  # (origin, plaintext, ciphertext)
        for name in sorted(os.listdir(tmp)):
            if name.endswith(".txt"):
                with open(os.path.join(tmp, name)) as f:
                    for o, p, c in (x.split() for x in f):
                        pt = base64.b64decode(p[4:]) if p.startswith("b64:") else p.encode()
                        lines.append((o, pt, c))
        by_origin = collections.Counter(o for o, _, _ in lines)
        nonces, indexes = set(), set()
        prefixes = collections.defaultdict(set)
        versions = collections.Counter()
        dup_nonces = dup_indexes = 0
        for origin, _, ct in lines:
            try:
                ws, en, scope, version, nonce = parse_header(ct)
            except (ValueError, IndexError) as e:
                fail("%s: a ciphertext whose header does not parse: %s" % (origin, e))
                continue
            if (ws, en, scope) != (WS, ENV, SCOPE):
                fail("%s: a ciphertext of %s/%s/%s" % (origin, ws, en, scope))
            versions[version] += 1
            prefixes[version].add(nonce[:8])
            if (version, nonce) in nonces:
                dup_nonces += 1
            nonces.add((version, nonce))
            if (version, nonce[8:]) in indexes:
                dup_indexes += 1
            indexes.add((version, nonce[8:]))
        total = len(lines)
        if dup_nonces:
            fail("%d nonces repeat under one DK version" % dup_nonces)
        if dup_indexes:
            fail("%d message indexes repeat under one DK version (two leases overlap)" %
                 dup_indexes)
        if by_origin["A"] + by_origin["B"] + by_origin["B2"] < target:
            fail("only %d messages through ekmd (want %d)" % (total - by_origin["CLI"], target))
        for origin in ("A", "B", "B2", "CLI"):
            if by_origin[origin] == 0:
                fail("no ciphertext came from %s: the run proves nothing about it" % origin)
        if len(versions) < 2:
            fail("one DK version only (%s): the CLI's rotation did not take" % dict(versions))

        # Everything decrypts through another process.
        t0 = time.monotonic()
        cli = [x for x in lines if x[0] == "CLI"]
        via_b2 = [x for x in lines if x[0] == "A"] + cli[0::2]
        via_a = [x for x in lines if x[0] in ("B", "B2")] + cli[1::2]
        results = {}

        def run_decrypt(key, port, part):
            results[key] = decrypt_all(port, tokens[-1], part)
        parts = [("b2-%d" % i, b2.port, via_b2[i::2]) for i in range(2)] + \
                [("a-%d" % i, a.port, via_a[i::2]) for i in range(2)]
        threads = [threading.Thread(target=run_decrypt, args=p) for p in parts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        decrypted = sum(results.values())
        if decrypted != total:
            fail("%d of %d ciphertexts decrypt through the other ekmd" % (decrypted, total))
        # A few of each origin through `ekm --data-dir` too.
        seen = collections.Counter()
        for origin, pt, ct in lines:
            if seen[origin] >= 3:
                continue
            seen[origin] += 1
            got = ekm_local(ekm, data, env, "decrypt", "-w", WS, "-e", ENV,
                            stdin=ct.encode() + b"\n")
            if got != pt:
                fail("a ciphertext of %s does not decrypt in local mode" % origin)
        decrypt_seconds = time.monotonic() - t0

        for d in (a, b2):
            for p in d.stop():
                fail(p)
        line = crash_report(b.log_text())
        if line:
            fail("ekmd B (killed) had a crash report before its kill: %s" % line)
        print("%d messages (%s) in %.1f s under DK versions %s; leases (nonce prefixes) per "
              "version %s; kill -9 of B at %d acknowledged, %d requests cut by it; decrypted "
              "through the other process in %.1f s" %
              (total, ", ".join("%s %d" % kv for kv in sorted(by_origin.items())), load_seconds,
               dict(sorted(versions.items())),
               {v: len(p) for v, p in sorted(prefixes.items())}, acked_at_kill,
               state.lost_in_kill, decrypt_seconds), flush=True)
    finally:
        for d in ekmds:
            if d.running():
                d.kill9()
        if os.environ.get("EKM_MULTIPROC_KEEP") == "1":
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("%d failed" % len(failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
