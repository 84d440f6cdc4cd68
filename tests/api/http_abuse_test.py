#!/usr/bin/env python3
"""Raw HTTP abuse against ekmd: every case gets a 4xx or a closed connection, never a 5xx, a
crash or a stuck thread, and after each group ekmd still serves an encrypt and a decrypt.

Table-driven over raw sockets (the cases http_hardening_test.py covers are not repeated here):
  - framing: duplicate Content-Length (equal and different), negative, non-numeric, huge and
    signed Content-Length, Content-Length together with chunked, bad chunk sizes, chunk
    extensions, a missing last chunk then close, a body shorter than declared then close;
  - size: an oversized request line, an oversized header, 1,000 headers;
  - slow clients: headers sent a byte at a time (a normal request is served meanwhile);
  - pipelining: three requests in one write answered in order; a request after a bad one in
    the same write is not run;
  - paths: invalid UTF-8, %00, %2e%2e, .., //, a very long segment, a query without a key;
  - every query parameter of every route that takes one (docs/openapi.yaml) with absurd values:
    -1, 0, 99999999999999999999, 1e999, abc, +5, 0x10, the empty string, NaN, %00.
Each case is named in the output. ekmd must stop with status 0 on SIGTERM with a clean log.

  http_abuse_test.py EKMD_BINARY
"""
import base64
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ekm_tokens import request, setup_tokens  # noqa: E402
from ekmd_process import Ekmd, isolated_env  # noqa: E402

WS = "acme"
failures = []
cases = 0


def check(ok, what):
    global cases
    cases += 1
    if not ok:
        failures.append(what)
        print("FAIL:", what, flush=True)
    return ok


def exchange(port, data, timeout=8.0, pause=None):
    """Sends `data` (bytes, or a list of bytes sent `pause` s apart) and reads until the server
    closes or `timeout` passes. Returns (statuses in order, closed by the server, raw)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    raw = b""
    closed = False
    try:
        parts = data if isinstance(data, list) else [data]
        for p in parts:
            try:
                s.sendall(p)
            except OSError:
                closed = True
                break
            if pause:
                time.sleep(pause)
        if not closed and not isinstance(data, list):
            try:
                s.shutdown(socket.SHUT_WR)  # nothing more comes: what the server does with that
            except OSError:
                closed = True
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            raw += chunk
    finally:
        s.close()
    # Status lines wherever they start: a pipelined response follows a body with no line break.
    statuses = [int(m) for m in re.findall(rb"HTTP/1\.[01] (\d{3}) ", raw)]
    return statuses, closed, raw


def acceptable(statuses, closed):
    """4xx answers or a closed connection; never a 5xx, never silence on an open connection."""
    if any(s >= 500 for s in statuses):
        return False
    return closed or (statuses and all(400 <= s < 500 or s < 300 for s in statuses))


class Case:
    def __init__(self, name, data, want_4xx=True):
        self.name, self.data, self.want_4xx = name, data, want_4xx


def req(method, path, headers=(), body=b"", host=True):
    lines = ["%s %s HTTP/1.1" % (method, path)]
    if host:
        lines.append("Host: 127.0.0.1")
    lines += list(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def run_group(d, t, title, table):
    print("--", title, flush=True)
    for c in table:
        statuses, closed, raw = exchange(d.port, c.data)
        ok = acceptable(statuses, closed)
        if c.want_4xx and statuses:
            ok = ok and 400 <= statuses[0] < 500
        check(ok, "%s: %s: statuses %s, closed %s, %r" % (title, c.name, statuses, closed,
                                                          raw[:200]))
    serves(d, t, "after " + title)


def serves(d, t, when):
    path = "/v1/workspaces/%s/environments/prod" % WS
    status, j, _ = request(d.url, "POST", path + "/encrypt", t["app"],
                           {"plaintext": base64.b64encode(b"still here").decode()})
    ok = check(status == 200, "%s: encrypt %s" % (when, status))
    if ok:
        status, j, _ = request(d.url, "POST", path + "/decrypt", t["app"],
                               {"ciphertext": j["ciphertext"]})
        check(status == 200 and base64.b64decode(j["plaintext"]) == b"still here",
              "%s: decrypt %s" % (when, status))
    check(d.running(), "%s: ekmd is running" % when)


def main():
    ekmd = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="ekm-http-abuse-")
    env = isolated_env(os.path.join(tmp, "home"))
    os.makedirs(env["HOME"])
    d = Ekmd(ekmd, os.path.join(tmp, "data"), os.path.join(tmp, "ekmd.log"),
             args=["--read-timeout", "3", "--body-timeout", "4"], env=env)
    try:
        t = setup_tokens(d.url, d.data_dir, WS)
        status, _, _ = request(d.url, "POST", "/v1/workspaces/%s/environments" % WS,
                               t["owner"], {"name": "prod"})
        check(status == 201, "create environment prod: %s" % status)
        auth = "Authorization: Bearer " + t["app"]
        enc = "/v1/workspaces/%s/environments/prod/encrypt" % WS
        body = b'{"plaintext":"eA=="}'
        jt = "Content-Type: application/json"

        run_group(d, t, "framing", [
            # Equal duplicates are one length (RFC 9112 §6.3 lets a recipient accept them): no
            # 5xx, no smuggling; different ones are refused.
            Case("duplicate Content-Length, equal",
                 req("POST", enc, [auth, jt, "Content-Length: 20", "Content-Length: 20"], body),
                 want_4xx=False),
            Case("duplicate Content-Length, different",
                 req("POST", enc, [auth, jt, "Content-Length: 20", "Content-Length: 5"], body)),
            Case("Content-Length list of equal values",
                 req("POST", enc, [auth, jt, "Content-Length: 20, 20"], body), want_4xx=False),
            Case("Content-Length list of different values",
                 req("POST", enc, [auth, jt, "Content-Length: 20, 5"], body)),
            Case("negative Content-Length", req("POST", enc, [auth, jt, "Content-Length: -1"], body)),
            Case("signed Content-Length", req("POST", enc, [auth, jt, "Content-Length: +20"], body)),
            Case("non-numeric Content-Length",
                 req("POST", enc, [auth, jt, "Content-Length: twenty"], body)),
            Case("hex Content-Length", req("POST", enc, [auth, jt, "Content-Length: 0x14"], body)),
            Case("huge Content-Length",
                 req("POST", enc, [auth, jt, "Content-Length: 99999999999999999999999"], body)),
            Case("Content-Length and chunked", req("POST", enc, [
                auth, jt, "Content-Length: 20", "Transfer-Encoding: chunked"],
                b"14\r\n" + body + b"\r\n0\r\n\r\n")),
            Case("chunk size not hex", req("POST", enc, [auth, jt, "Transfer-Encoding: chunked"],
                                           b"zz\r\n" + body + b"\r\n0\r\n\r\n")),
            Case("chunk size negative", req("POST", enc, [auth, jt, "Transfer-Encoding: chunked"],
                                            b"-14\r\n" + body + b"\r\n0\r\n\r\n")),
            Case("chunk size with 40 digits", req("POST", enc, [
                auth, jt, "Transfer-Encoding: chunked"], b"1" * 40 + b"\r\n" + body)),
            Case("chunk extension then a missing last chunk", req("POST", enc, [
                auth, jt, "Transfer-Encoding: chunked"],
                b"14;name=value\r\n" + body + b"\r\n"), want_4xx=False),
            Case("body shorter than declared, then close",
                 req("POST", enc, [auth, jt, "Content-Length: 100"], body), want_4xx=False),
            Case("no Host header", req("GET", "/v1/token", [auth], host=False), want_4xx=False),
            Case("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Case("garbage request line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 4),
            Case("bare LF line ends", b"GET /healthz HTTP/1.1\nHost: x\n\n", want_4xx=False),
        ])

        run_group(d, t, "size", [
            Case("request line of 64 KiB", req("GET", "/v1/" + "a" * 65536, [auth])),
            Case("one header of 64 KiB", req("GET", "/v1/token", [auth, "X-Big: " + "b" * 65536])),
            Case("1,000 headers", req("GET", "/v1/token", [auth] + ["X-H%d: v" % i
                                                                    for i in range(1000)])),
            Case("101 headers", req("GET", "/v1/token", [auth] + ["X-H%d: v" % i
                                                                  for i in range(100)])),
            Case("header name with a space", req("GET", "/v1/token", [auth, "Bad Name: v"])),
            Case("header without a colon", req("GET", "/v1/token", [auth, "NoColon"])),
        ])

        # Slow headers: a byte every 50 ms for ~4 s; meanwhile a normal request is served.
        print("-- slow clients", flush=True)
        slow = req("GET", "/v1/token", [auth, "X-Slow: " + "s" * 60])
        result = {}

        def slowloris():
            result["r"] = exchange(d.port, [slow[i:i + 1] for i in range(len(slow))], timeout=10,
                                   pause=0.05)
        th = threading.Thread(target=slowloris)
        th.start()
        time.sleep(0.5)
        serves(d, t, "while a client sends its header a byte at a time")
        th.join(30)
        statuses, closed, _ = result.get("r", ([], False, b""))
        check(not th.is_alive() and (closed or statuses),
              "slow header: answered or closed (statuses %s, closed %s)" % (statuses, closed))
        check(not any(s >= 500 for s in statuses), "slow header: no 5xx (%s)" % statuses)

        print("-- pipelining", flush=True)
        three = req("GET", "/healthz") * 3
        statuses, closed, _ = exchange(d.port, three)
        check(statuses == [200, 200, 200], "three pipelined requests answered in order: %s" %
              statuses)
        bad_then_good = (req("POST", enc, [auth, jt, "Content-Length: 20", "Content-Length: 5"],
                             body) + req("POST", enc, [auth, jt, "Content-Length: 20"], body))
        statuses, closed, _ = exchange(d.port, bad_then_good)
        check(len(statuses) == 1 and 400 <= statuses[0] < 500 and closed,
              "a request after a bad one in the same write is not run: %s closed %s" %
              (statuses, closed))
        serves(d, t, "after pipelining")

        paths = ["/v1/workspaces/%ff%fe/environments", "/v1/workspaces/\xff\xfe",
                 "/v1/workspaces/acme%00/environments", "/v1/workspaces/%2e%2e/environments",
                 "/v1/workspaces/../workspaces", "/v1/workspaces/acme/../../v1/token",
                 "//v1//workspaces//acme", "/v1/workspaces/" + "x" * 4000, "/v1/token?=",
                 "/v1/token?&&&", "/v1/workspaces/acme/environments/prod/%2fencrypt", "*",
                 "http://127.0.0.1/v1/token"]
        run_group(d, t, "paths", [Case("path %r" % p[:60], req("GET", p, [auth]), want_4xx=False)
                                  for p in paths])

        values = ["-1", "0", "99999999999999999999", "1e999", "abc", "+5", "0x10", "", "NaN",
                  "%00", "%ff", "1.5", " 7"]
        routes = [
            ("GET", "/v1/workspaces/acme/events", ["limit", "after", "since", "until", "type",
                                                     "environment"], t["auditor"]),
            ("GET", "/v1/workspaces/acme/audit", ["limit", "after", "since", "until", "type",
                                                    "environment"], t["auditor"]),
            ("GET", "/v1/audit", ["limit", "after", "since", "until", "type", "environment"],
             t["admin"]),
            ("GET", "/v1/tokens", ["workspace"], t["owner"]),
            ("GET", "/v1/workspaces/acme/environments/prod/key/material", ["key_id"],
             t["key-manager"]),
        ]
        table = []
        for method, path, params, token in routes:
            for p in params:
                for v in values:
                    table.append(Case("%s %s?%s=%r" % (method, path, p, v), req(
                        method, "%s?%s=%s" % (path, p, v.replace(" ", "%20")),
                        ["Authorization: Bearer " + token]), want_4xx=False))
        for v in values:  # the stream route's parameters, with a body
            for p in ("scope", "format"):
                table.append(Case("POST encrypt?%s=%r" % (p, v), req(
                    "POST", "%s?%s=%s" % (enc, p, v.replace(" ", "%20")),
                    [auth, "Content-Type: application/octet-stream", "Content-Length: 3"], b"abc"),
                    want_4xx=False))
        run_group(d, t, "query parameters", table)
    finally:
        problems = d.stop()
        for p in problems:
            check(False, p)
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d cases, %d failed" % (cases, len(failures)))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
