#!/usr/bin/env python3
"""ekmd's HTTP layer against hostile and unlucky clients, through raw sockets and curl (issue 12).

On one ekmd (key cache TTL 2 s):
  - a number out of the range of a double (1e309) in a JSON body is a 400 naming its line and
    column, on every kind of route (the data plane's fast path included), never a 500;
  - a chunked JSON body declaring a 2^64-1 byte chunk is refused with 413 at once;
  - a Transfer-Encoding other than exactly "chunked" is a 400 and the connection closes: the
    body never runs as a request of its own (request smuggling);
  - a streamed decrypt cut at a segment boundary fails for a generic client (curl exits
    non-zero), and ekm's own client gets the precise error from the Ekm-Error trailer;
  - a stream in progress stops when its key is revoked (imported material deleted), within the
    key cache TTL, with the CMK's error;
  - ekmd runs with core dumps off (it was started with the core limit raised).
On a second ekmd with small limits (--body-timeout, --max-requests-per-token,
--max-connections-per-address with --limit-loopback-connections, --max-stream-duration):
  - a body trickling in is cut by its total deadline before it completes;
  - a token's requests past its limit in progress get 429 with Retry-After, other tokens not;
  - a stream that runs too long is cut;
  - connections past the per-address limit get 429 with Retry-After and are closed.
Each ekmd must stop with status 0 on SIGTERM and log no sanitizer report.

  http_hardening_test.py EKMD_BINARY EKM_BINARY
Stdlib, curl and openssl only.
"""
import base64
import json
import os
import re
import resource
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ekm_tokens import request, setup_tokens  # noqa: E402
from ekmd_process import Ekmd, ekm_problems, isolated_env  # noqa: E402

WS = "acme"
SEGMENT = 64 * 1024  # the stream form's default segment size (docs/format.md)
TAG = 16
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAIL:", what, flush=True)
    return ok


def start_ekmd(binary, tmp, name, args):
    def dumps_allowed():  # so that only ekmd itself can turn core dumps off
        try:
            resource.setrlimit(resource.RLIMIT_CORE,
                               (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        except (ValueError, OSError):
            pass

    try:
        return Ekmd(binary, os.path.join(tmp, name), os.path.join(tmp, name + ".log"), args,
                    isolated_env(tmp), name=name, preexec_fn=dumps_allowed)
    except RuntimeError as e:
        raise SystemExit(str(e))


def stop_ekmd(d):
    """SIGTERM: exit status 0 and no sanitizer report in its log (ekmd_process.Ekmd.stop)."""
    for problem in d.stop():
        check(False, problem)


class Conn:
    """A raw HTTP/1.1 connection: bytes out, responses parsed by hand."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.eof = False

    def send(self, data):
        try:
            self.sock.sendall(data if isinstance(data, bytes) else data.encode())
            return True
        except OSError:
            return False

    def _fill(self):
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _line(self):
        while b"\r\n" not in self.buf:
            if not self._fill():
                return None
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exactly(self, n):
        while len(self.buf) < n:
            if not self._fill():
                return None
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def head(self):
        """(status, {lower-case name: value}) of the next response, or (None, {}) at EOF."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                return None, {}
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return int(lines[0].split()[1]), headers

    def response(self):
        """status, headers, body, trailers, complete (False: the body was cut)."""
        status, headers = self.head()
        if status is None:
            return None, {}, b"", {}, False
        body, trailers = b"", {}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = self._line()
                if size_line is None:
                    return status, headers, body, trailers, False
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while True:
                        line = self._line()
                        if line is None:
                            return status, headers, body, trailers, False
                        if line == b"":
                            return status, headers, body, trailers, True
                        k, _, v = line.decode("latin-1").partition(":")
                        trailers[k.strip().lower()] = v.strip()
                chunk = self._exactly(size + 2)
                if chunk is None:
                    return status, headers, body + self.buf, trailers, False
                body += chunk[:-2]
        n = int(headers.get("content-length", "0"))
        data = self._exactly(n)
        return status, headers, data or b"", trailers, data is not None

    def closed_after(self, timeout=10):
        """Whether the server closes the connection (EOF) within `timeout`, without sending
        anything more."""
        self.sock.settimeout(timeout)
        try:
            while self._fill():
                pass
        except socket.timeout:
            return False
        return self.buf == b""

    def close(self):
        self.sock.close()


def head_text(method, path, token, extra="", content_type="application/json"):
    return ("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
            "Content-Type: %s\r\n%s\r\n" % (method, path, token, content_type, extra))


def json_request(port, method, path, token, body):
    c = Conn(port)
    data = body.encode()
    c.send(head_text(method, path, token, "Content-Length: %d\r\nConnection: close\r\n" %
                     len(data)) + body)
    status, headers, raw, _, _ = c.response()
    c.close()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return status, parsed, headers


def env_path(env, rest=""):
    return "/v1/workspaces/%s/environments/%s%s" % (WS, env, rest)


# --- one ekmd, default limits ---------------------------------------------------------------

def number_overflow(d, t):
    """1e309 anywhere in a body: 400 naming line and column, on every kind of route."""
    cases = [
        ("POST", "/v1/workspaces", "admin", '{"name": 1e309}', "line 1, column 10"),
        ("POST", "/v1/workspaces/%s/environments" % WS, "owner", '{"name": "x", "n": -1e309}',
         "line 1, column 20"),
        # The data plane's fast path hands anything but strings to the full parser.
        ("POST", env_path("prod", "/encrypt"), "app", '{"plaintext": 1e309}', "column 15"),
        ("POST", env_path("prod", "/encrypt"), "app", '{"plaintext":"aGk=","scope":1e400}',
         "column 29"),
        ("POST", env_path("prod", "/decrypt"), "app", '{"ciphertext":"ekm1:x","n":9e999}',
         "column 28"),
        ("POST", env_path("prod", "/encrypt/batch"), "app",
         '{"items":[{"plaintext":"aGk=","n":1e309}]}', "column 35"),
        ("POST", env_path("prod", "/key/import-params"), "key-manager",
         '{"expires_in_seconds": 1e309}', "column 24"),
        ("PATCH", env_path("prod", "/settings"), "key-manager",
         '{"key_cache_ttl_seconds": 1e309}', "column 27"),
        ("POST", "/v1/tokens", "owner",
         '{"role": "app", "workspace": "acme", "expires_in_seconds": 1e309}', "column 60"),
        ("POST", "/v1/workspaces", "admin", '{\n  "name":\n    1' + "0" * 400 + '}',
         "line 3, column 5"),
    ]
    for method, path, role, body, where in cases:
        status, j, _ = json_request(d.port, method, path, t[role], body)
        msg = (j or {}).get("error", {}).get("message", "") if isinstance(j, dict) else ""
        check(status == 400 and j["error"]["code"] == "invalid_argument" and where in msg and
              "out of range" in msg,
              "1e309: %s %s %s: expected 400 naming %r and 'out of range', got %s %s" %
              (method, path, body[:40], where, status, j))


def huge_chunk(d, t):
    """A JSON body whose chunk declares 2^64-1 bytes: 413 at once, not after the read timeout
    (this ekmd's is 30 s; the client waits 10 s)."""
    c = Conn(d.port, timeout=10)
    c.send(head_text("POST", "/v1/workspaces/%s/environments" % WS, t["owner"],
                     "Transfer-Encoding: chunked\r\n") + "ffffffffffffffff\r\n{\"na")
    try:
        status, _, body, _, _ = c.response()
    except socket.timeout:
        status, body = "no answer within 10 s", b""
    check(status == 413 and b"resource_exhausted" in body,
          "2^64-1 byte chunk: expected 413 at once, got %s %r" % (status, body[:200]))
    c.close()
    status, j, _ = json_request(d.port, "POST", "/v1/workspaces", t["admin"], "")
    check(status == 400, "an empty body still answers 400 on the same server: %s" % status)


def smuggling(d, t):
    """A body the server would not read as a body must never run as a request."""
    smuggled = ("GET /v1/token HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n"
                % t["app"])
    for te in ["xchunked", "chunked, identity", "identity", "gzip, chunked",
               "chunked\r\nTransfer-Encoding: chunked"]:
        c = Conn(d.port)
        c.send(head_text("POST", "/v1/workspaces/%s/environments" % WS, t["owner"],
                         "Transfer-Encoding: %s\r\n" % te) + smuggled)
        status, _, body, _, _ = c.response()
        check(status == 400, "Transfer-Encoding: %s: expected 400, got %s %r" %
              (te, status, body[:200]))
        check(c.closed_after(10), "Transfer-Encoding: %s: the connection stayed open or "
              "answered the smuggled request: %r" % (te, c.buf[:200]))
        c.close()
    # HTTP/1.0 has no Transfer-Encoding (RFC 9112 §6.1): refused, not read as chunked.
    body = b'{"name": "smuggled"}'
    c = Conn(d.port)
    c.send(("POST /v1/workspaces/%s/environments HTTP/1.0\r\nHost: 127.0.0.1\r\n"
            "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n%x\r\n" % (WS, t["owner"], len(body))).encode() +
           body + b"\r\n0\r\n\r\n")
    status, _, raw, _, _ = c.response()
    check(status == 400, "HTTP/1.0 with Transfer-Encoding: expected 400, got %s %r" %
          (status, raw[:200]))
    c.close()
    status, _, _ = request(d.url, "GET", env_path("smuggled"), t["owner"])
    check(status == 404, "HTTP/1.0 chunked body was not used: GET the environment gives %s" %
          status)


def curl_stream(d, token, path, infile, outfile, extra=()):
    """curl's exit status streaming `infile` through `path`; the output in `outfile`."""
    return subprocess.run(
        ["curl", "-sS", "--no-buffer", "-o", outfile, "-X", "POST", "--data-binary", "@" + infile,
         "-H", "Content-Type: application/octet-stream", "-H", "Authorization: Bearer " + token,
         "-H", "Transfer-Encoding: chunked", "-H", "Expect:", *extra, d.url + path],
        capture_output=True, text=True).returncode


def stream_header_size(ciphertext_size, plaintext_size):
    segments = max(1, -(-plaintext_size // SEGMENT))
    return ciphertext_size - plaintext_size - segments * TAG


def stream_cut(d, t, tmp, ekm):
    """A stream cut at a segment boundary: every client must see a failure."""
    plain = os.path.join(tmp, "plain.bin")
    with open(plain, "wb") as f:
        f.write(os.urandom(307200))
    ct = os.path.join(tmp, "plain.ekm")
    rc = curl_stream(d, t["app"], env_path("prod", "/encrypt"), plain, ct)
    check(rc == 0, "streamed encrypt: curl exit %d" % rc)
    data = open(ct, "rb").read()
    header = stream_header_size(len(data), 307200)
    cut = os.path.join(tmp, "cut.ekm")
    with open(cut, "wb") as f:
        f.write(data[:header + 3 * (SEGMENT + TAG)])
    out = os.path.join(tmp, "cut.out")
    rc = curl_stream(d, t["app"], env_path("prod", "/decrypt"), cut, out)
    got = os.path.getsize(out) if os.path.exists(out) else 0
    check(rc != 0, "decrypt of a stream cut at a segment boundary: curl exit 0 (%d of 307200 "
          "bytes): a generic client sees success" % got)
    rc = curl_stream(d, t["app"], env_path("prod", "/decrypt"), ct, out)
    check(rc == 0 and open(out, "rb").read() == open(plain, "rb").read(),
          "decrypt of the whole stream: curl exit %d" % rc)
    # The client that announces it reads the trailer gets the error there.
    c = Conn(d.port)
    c.send(head_text("POST", env_path("prod", "/decrypt"), t["app"],
                     "Content-Length: %d\r\nEkm-Accept-Trailer: Ekm-Error\r\n" %
                     (header + 3 * (SEGMENT + TAG)), "application/octet-stream").encode() +
           data[:header + 3 * (SEGMENT + TAG)])
    status, _, body, trailers, complete = c.response()
    check(status == 200 and complete and "data_loss" in trailers.get("ekm-error", "") and
          "ekm-result" not in trailers,
          "cut stream with Ekm-Accept-Trailer: expected the Ekm-Error trailer, got %s %s %s" %
          (status, complete, trailers))
    c.close()
    # ekm's own client names the cause.
    env = dict(os.environ, EKM_TOKEN=t["app"], HOME=tmp)
    r = subprocess.run([ekm, "--server", d.url, "decrypt", "-w", WS, "-e", "prod"],
                       stdin=open(cut, "rb"), capture_output=True, env=env)
    check(r.returncode != 0 and b"truncated" in r.stderr and not ekm_problems(r),
          "ekm --server decrypt of a cut stream: exit %d, stderr %r" % (r.returncode, r.stderr))


def stream_revoked(d, t, tmp):
    """Imported material deleted while a decrypt stream runs: past the key cache TTL (2 s) the
    stream fails with the CMK's error instead of going on to Ekm-Result: ok."""
    key = env_path("imp", "/key")
    status, _, _ = request(d.url, "POST", "/v1/workspaces/%s/environments" % WS, t["owner"],
                           {"name": "imp"})
    check(status == 201, "create environment imp: %s" % status)
    status, p, _ = request(d.url, "POST", key + "/import-params", t["key-manager"], {})
    if not check(status == 200, "import-params: %s %s" % (status, p)):
        return
    pem = os.path.join(tmp, "wrapping-key.pem")
    with open(pem, "w") as f:
        f.write(p["wrapping_key_pem"])
    material, wrapped = os.path.join(tmp, "material.bin"), os.path.join(tmp, "material.wrapped")
    with open(material, "wb") as f:
        f.write(os.urandom(32))
    subprocess.run(["openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", pem, "-in", material,
                    "-out", wrapped, "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt",
                    "rsa_oaep_md:sha256", "-pkeyopt", "rsa_mgf1_md:sha256"], check=True)
    status, j, _ = request(d.url, "POST", key + "/import", t["key-manager"],
                           {"material": base64.b64encode(open(wrapped, "rb").read()).decode(),
                            "import_token": p["import_token"]})
    if not check(status == 200, "import: %s %s" % (status, j)):
        return
    plain = os.path.join(tmp, "big.bin")
    with open(plain, "wb") as f:
        f.write(os.urandom(1 << 20))
    ct = os.path.join(tmp, "big.ekm")
    check(curl_stream(d, t["app"], env_path("imp", "/encrypt"), plain, ct) == 0, "encrypt imp")
    data = open(ct, "rb").read()

    c = Conn(d.port, timeout=20)
    c.send(head_text("POST", env_path("imp", "/decrypt"), t["app"],
                     "Transfer-Encoding: chunked\r\nEkm-Accept-Trailer: Ekm-Error\r\n",
                     "application/octet-stream"))
    first = 256 * 1024
    c.send(b"%x\r\n" % first + data[:first] + b"\r\n")
    status, headers = c.head()
    check(status == 200, "decrypt stream of imp answers 200 with output: %s" % status)
    status, j, _ = request(d.url, "DELETE", key + "/material", t["key-manager"])
    check(status == 200, "delete-material: %s %s" % (status, j))
    time.sleep(3)  # past the key cache TTL: the next use must ask the (deleted) material
    rest = data[first:]
    c.send(b"%x\r\n" % len(rest) + rest + b"\r\n0\r\n\r\n")
    # The rest of the chunked response (its head was read above).
    body, trailers, complete = b"", {}, False
    while True:
        line = c._line()
        if line is None:
            break
        size = int(line.split(b";")[0], 16)
        if size == 0:
            while True:
                tl = c._line()
                if tl is None or tl == b"":
                    complete = tl == b""
                    break
                k, _, v = tl.decode("latin-1").partition(":")
                trailers[k.strip().lower()] = v.strip()
            break
        chunk = c._exactly(size + 2)
        if chunk is None:
            break
        body += chunk[:-2]
    c.close()
    err = trailers.get("ekm-error", "")
    check("ekm-result" not in trailers and "failed_precondition" in err and "deleted" in err,
          "a stream whose key material was deleted %s s ago went on: %d plaintext bytes after "
          "the deletion, trailers %s" % (3, len(body), trailers))


def core_dumps_off(d):
    limits = open("/proc/%d/limits" % d.proc.pid).read()
    m = re.search(r"Max core file size\s+(\S+)\s+(\S+)", limits)
    check(m is not None and m.group(1) == "0" and m.group(2) == "0",
          "ekmd's core file size limit is %s, not 0 0" % ((m.groups(),) if m else limits))


# --- one ekmd with small limits -------------------------------------------------------------

def slow_body(d, t):
    """One byte every 0.25 s of a 300-byte body: cut by --body-timeout 2, long before the body
    (75 s) or the per-read timeout (30 s) would end it."""
    c = Conn(d.port, timeout=30)
    body = ('{"name": "slow", "pad": "' + "x" * 300)[:300]
    c.send(head_text("POST", "/v1/workspaces/%s/environments" % WS, t["owner"],
                     "Content-Length: %d\r\n" % len(body)))
    sent, cut = 0, False
    start = time.monotonic()
    while sent < len(body) and time.monotonic() - start < 30:
        if not c.send(body[sent]):
            cut = True
            break
        sent += 1
        readable, _, _ = select.select([c.sock], [], [], 0.25)
        if readable:
            cut = True  # closed (or answered) before the body was complete
            break
    check(cut and sent < len(body),
          "a body trickling in was not cut by --body-timeout: %d of %d bytes sent" %
          (sent, len(body)))
    c.close()


def open_stream(d, token):
    """A streamed encrypt in progress: its head and first output read, so the server holds it."""
    c = Conn(d.port, timeout=20)
    c.send(head_text("POST", env_path("prod", "/encrypt"), token,
                     "Transfer-Encoding: chunked\r\n", "application/octet-stream"))
    first = 3 * SEGMENT
    c.send(b"%x\r\n" % first + os.urandom(first) + b"\r\n")
    status, _ = c.head()
    return c, status


def per_token_limit(d, t):
    """--max-requests-per-token 2: two streams in progress, the third request of that token
    gets 429 with Retry-After; another token is not limited; the limit frees with the stream."""
    streams = [open_stream(d, t["app"]) for _ in range(2)]
    check([s for _, s in streams] == [200, 200], "two streams in progress: %s" %
          [s for _, s in streams])
    status, j, headers = json_request(d.port, "POST", env_path("prod", "/encrypt"), t["app"],
                                      '{"plaintext": "aGk="}')
    check(status == 429 and headers.get("retry-after", "").isdigit() and
          j["error"]["code"] == "resource_exhausted",
          "third request of the token: expected 429 with Retry-After, got %s %s %s" %
          (status, headers, j))
    status, _, _ = json_request(d.port, "GET", env_path("prod"), t["owner"], "")
    check(status == 200, "another token meanwhile: %s" % status)
    c, _ = streams[0]
    c.send(b"0\r\n\r\n")
    c.sock.settimeout(20)
    while c._fill():  # the rest of the response, to the end: the request is over
        if c.buf.endswith(b"\r\n\r\n") and b"Ekm-Result" in c.buf:
            break
    c.close()
    ok = False
    for _ in range(50):  # the server notices the end of the request at once; allow a moment
        status, _, _ = json_request(d.port, "POST", env_path("prod", "/encrypt"), t["app"],
                                    '{"plaintext": "aGk="}')
        if status == 200:
            ok = True
            break
        time.sleep(0.1)
    check(ok, "after one stream ended, the token's next request: %s" % status)
    streams[1][0].close()


def stream_too_long(d, t):
    """--max-stream-duration 3: a stream still sending after it is cut, before it could end
    (a segment every 0.5 s for 20 s)."""
    c, status = open_stream(d, t["app"])
    check(status == 200, "stream: %s" % status)
    start, cut = time.monotonic(), False
    while time.monotonic() - start < 20:
        if not c.send(b"%x\r\n" % SEGMENT + os.urandom(SEGMENT) + b"\r\n"):
            cut = True
            break
        readable, _, _ = select.select([c.sock], [], [], 0.5)
        if readable:
            data = b""
            try:
                while True:
                    chunk = c.sock.recv(1 << 20)
                    if not chunk:
                        cut = True
                        break
                    data += chunk
                    if not select.select([c.sock], [], [], 0)[0]:
                        break
            except OSError:
                cut = True
            if cut:
                break
    check(cut, "a stream running past --max-stream-duration was not cut")
    c.close()


def per_address_limit(d, t):
    """--max-connections-per-address 4 with --limit-loopback-connections: of 6 connections at
    once, those past 4 are answered 429 with Retry-After at once and closed."""
    conns = [Conn(d.port) for _ in range(6)]
    answers = []
    for c in conns:
        c.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    for c in conns:
        status, headers, body, _, _ = c.response()
        closed = status == 429 and c.closed_after(10)
        answers.append((status, headers.get("retry-after"), closed))
    refused = [a for a in answers if a[0] == 429]
    check(len(refused) >= 2 and all(a[0] in (200, 429) for a in answers) and
          all(r[1] == "1" and r[2] for r in refused),
          "6 connections with a limit of 4: expected at least 2 answered 429 (Retry-After: 1) "
          "and closed, got %s" % answers)
    for c in conns:
        c.close()
    ok = False
    for _ in range(50):
        c = Conn(d.port)
        c.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        status = c.response()[0]
        c.close()
        if status == 200:
            ok = True
            break
        time.sleep(0.1)
    check(ok, "once the connections closed, a new one is served: %s" % status)


def main():
    ekmd, ekm = sys.argv[1], sys.argv[2]
    for tool in ("curl", "openssl"):
        if shutil.which(tool) is None:
            raise SystemExit(tool + " is needed")
    tmp = tempfile.mkdtemp(prefix="ekm-http-hardening-")
    try:
        d = start_ekmd(ekmd, tmp, "main", ["--key-cache-ttl", "2", "--read-timeout", "30"])
        try:
            t = setup_tokens(d.url, d.data_dir, WS)
            status, _, _ = request(d.url, "POST", "/v1/workspaces/%s/environments" % WS,
                                   t["owner"], {"name": "prod"})
            check(status == 201, "create environment prod: %s" % status)
            core_dumps_off(d)
            number_overflow(d, t)
            huge_chunk(d, t)
            smuggling(d, t)
            stream_cut(d, t, tmp, ekm)
            stream_revoked(d, t, tmp)
        finally:
            stop_ekmd(d)
        d = start_ekmd(ekmd, tmp, "limits",
                 ["--read-timeout", "30", "--body-timeout", "2", "--max-requests-per-token", "2",
                  "--max-connections-per-address", "4", "--limit-loopback-connections",
                  "--max-stream-duration", "3"])
        try:
            t = setup_tokens(d.url, d.data_dir, WS)
            status, _, _ = request(d.url, "POST", "/v1/workspaces/%s/environments" % WS,
                                   t["owner"], {"name": "prod"})
            check(status == 201, "create environment prod: %s" % status)
            slow_body(d, t)
            per_token_limit(d, t)
            stream_too_long(d, t)
            per_address_limit(d, t)
        finally:
            stop_ekmd(d)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d failed" % len(failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
