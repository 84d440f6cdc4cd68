#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of moto, for the AWS error paths moto cannot produce.

Usage: kms_fault_proxy.py --upstream URL [--ca-file F] [--port 0] [--setup SETUP.json]

Listens on 127.0.0.1:PORT (plain HTTP/1.1 with keep-alive) and prints the port on stdout once it
listens. Every request is forwarded unchanged (method, path, headers including Host, body) to the
upstream moto, so SigV4 signatures made for the proxy's address still verify: moto checks the
signature against the Host header it receives. Its answer is returned unchanged.

Control endpoint (same port, never forwarded or counted):
  POST /__fault__        {"target": "TrentService.Decrypt" | "*", "kind": KIND,
                          "count": N (matching requests that get it; -1 = forever; default 1),
                          "delay_ms": D (for "timeout"), "message": optional override,
                          "status": optional HTTP status override,
                          "key": optional text: only requests whose KeyId contains it}
  GET  /__fault__        the armed faults, with what is left of their counts
  POST /__fault__/clear  disarms every fault and zeroes the counters; with a body
                         {"key": K}, disarms only the faults armed with that "key"
  GET  /__fault__/stats  {"requests": {target: n}, "faulted": {target: n},
                          "forwarded": {target: n}}
A request's target is its X-Amz-Target header (JSON protocols: "TrentService.Encrypt"), or for
query-protocol services (STS, IAM) "<service>.<Action>", e.g. "sts.AssumeRole", the service being
taken from the SigV4 credential scope ("sts" when the request is unsigned).
Faults are tried in the order they were armed; the first one that matches and has count left is
served.

KINDs: DisabledException, KMSInvalidStateException, ThrottlingException, LimitExceededException,
AccessDeniedException, NotFoundException, UnrecognizedClientException (HTTP 400),
KMSInternalException (500), any other name (400 unless "status" is given) -- all in AWS's JSON
1.1 error shape {"__type": KIND, "message": ...} with Content-Type application/x-amz-json-1.1 and
x-amzn-RequestId (query-protocol requests get the AWS query XML error shape instead);
ServiceUnavailable (503 with an HTML body, as a load balancer sends it); timeout (waits delay_ms,
then forwards and answers, too late for a client with a shorter timeout); reset (closes the
connection without answering, with a TCP RST).

AssumeRoleWithWebIdentity is unsigned on AWS, but moto with IAM checks on fails any unsigned
request (HTTP 500). With --setup, the proxy signs such an unsigned request with the set-up's
ekm-web-identity user (allowed only sts:AssumeRoleWithWebIdentity) before forwarding it, so
clients can use the proxy as their STS endpoint exactly as they would use AWS.
"""
import argparse
import base64
import datetime
import hashlib
import hmac
import http.client
import json
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
              "trailer", "upgrade"}

# (HTTP status, message template). Templates may use {key_arn}, {principal}, {action}.
# Texts are AWS's as seen in real responses and the KMS API reference.
JSON_FAULTS = {
    "DisabledException": (400, "{key_arn} is disabled."),
    "KMSInvalidStateException": (400, "{key_arn} is pending deletion."),
    "ThrottlingException": (400, "You have exceeded the rate at which you may call KMS. "
                                 "Reduce the frequency of your calls."),
    "LimitExceededException": (400, "The request was rejected because a quota was exceeded. "
                                    "For more information, see Quotas in the Key Management "
                                    "Service Developer Guide."),
    "KMSInternalException": (500, "The request was rejected because an internal exception "
                                  "occurred. The request can be retried."),
    "AccessDeniedException": (400, "User: {principal} is not authorized to perform: {action} "
                                   "on resource: {key_arn} because no resource-based policy "
                                   "allows the {action} action"),
    "NotFoundException": (400, "Key '{key_arn}' does not exist"),
    "UnrecognizedClientException": (400, "The security token included in the request is "
                                         "invalid."),
    # STS (query protocol) spells throttling differently.
    "Throttling": (400, "Rate exceeded"),
}
SERVICE_UNAVAILABLE_HTML = (
    "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n</body>\r\n</html>\r\n")
UNSIGNED_STS_ACTIONS = {"AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"}


class State:
    """Armed faults and counters, shared by the handler threads under one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.faults = []
        self.requests, self.faulted, self.forwarded = {}, {}, {}

    def take_fault(self, target, key_id=""):
        with self.lock:
            self.requests[target] = self.requests.get(target, 0) + 1
            for f in self.faults:
                if f.get("key") and f["key"] not in key_id:
                    continue  # a fault for one key only (one tenant's CMK)
                if f["count"] != 0 and f["target"] in ("*", target):
                    if f["count"] > 0:
                        f["count"] -= 1
                    self.faulted[target] = self.faulted.get(target, 0) + 1
                    return dict(f)
            return None

    def count_forwarded(self, target):
        with self.lock:
            self.forwarded[target] = self.forwarded.get(target, 0) + 1


def sigv4_sign(method, host, path, headers, body, access_key, secret_key, region, service):
    """Adds X-Amz-Date and Authorization (SigV4, headers content-type;host;x-amz-date)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    headers["X-Amz-Date"] = amz_date
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    canonical_headers = (f"content-type:{' '.join(content_type.split())}\n"
                         f"host:{host}\nx-amz-date:{amz_date}\n")
    signed = "content-type;host;x-amz-date"
    parsed = urllib.parse.urlsplit(path)
    query = "&".join(sorted(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
        for k, v in urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)))
    canonical = "\n".join([method, parsed.path or "/", query, canonical_headers, signed,
                           hashlib.sha256(body).hexdigest()])
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    k = ("AWS4" + secret_key).encode()
    for part in (day, region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                                f"SignedHeaders={signed}, Signature={signature}")


def make_handler(args, state, setup):
    upstream = urllib.parse.urlsplit(args.upstream)
    ssl_ctx = None
    if upstream.scheme == "https":
        ssl_ctx = ssl.create_default_context(cafile=args.ca_file)
    account = setup.get("account", "123456789012")
    key_to_user = {u["access_key_id"]: u["arn"] for u in setup.get("users", {}).values()}
    web_signer = setup.get("users", {}).get("ekm-web-identity")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive towards the client, whatever moto does

        def log_message(self, fmt, *a):  # one line per request on stderr, the peer's log
            sys.stderr.write("proxy: " + (fmt % a) + "\n")

        # ---- plumbing -------------------------------------------------------------------
        def read_body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def send(self, status, body, headers):
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def send_json(self, status, obj):
            self.send(status, json.dumps(obj).encode(), [("Content-Type", "application/json")])

        def do_GET(self):
            self.handle_any()

        do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_GET

        def handle_any(self):
            body = self.read_body()
            if self.path.startswith("/__fault__"):
                return self.control(body)
            target, form = self.target_of(body)
            fault = state.take_fault(target, self.key_id_of(body))
            if fault is not None:
                kind = fault["kind"]
                if kind == "reset":
                    return self.reset_connection()
                if kind == "timeout":
                    time.sleep(max(0, fault.get("delay_ms", 0)) / 1000.0)
                else:
                    return self.send_fault(fault, target, body, form)
            self.forward(target, body, form)

        def key_id_of(self, body):
            """The KeyId of a JSON-protocol request ("" when there is none)."""
            try:
                key = json.loads(body).get("KeyId", "") if body else ""
            except (ValueError, AttributeError):
                return ""
            return key if isinstance(key, str) else ""

        def target_of(self, body):
            """Returns (target, form fields of a query-protocol request or None)."""
            amz_target = self.headers.get("X-Amz-Target")
            if amz_target:
                return amz_target, None
            query = urllib.parse.urlsplit(self.path).query
            ctype = self.headers.get("Content-Type", "")
            text = body.decode("utf-8", "replace") if "form-urlencoded" in ctype else ""
            form = dict(urllib.parse.parse_qsl(query + "&" + text))
            service = self.scope()[2] or "sts"
            return f"{service}.{form.get('Action', self.command + ' ' + self.path)}", form

        def scope(self):
            """(access key id, region, service) from the SigV4 Authorization header."""
            auth = self.headers.get("Authorization", "")
            cred = auth.partition("Credential=")[2].partition(",")[0].split("/")
            if len(cred) >= 4:
                return cred[0], cred[2], cred[3]
            return "", "", ""

        def reset_connection(self):
            # SO_LINGER with timeout 0 makes close() send RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        # ---- faults ---------------------------------------------------------------------
        def send_fault(self, fault, target, body, form):
            kind = fault["kind"]
            request_id = str(uuid.uuid4())
            if kind == "ServiceUnavailable":
                return self.send(fault.get("status") or 503, SERVICE_UNAVAILABLE_HTML.encode(),
                                 [("Content-Type", "text/html")])
            status, template = JSON_FAULTS.get(kind, (400, ""))
            status = fault.get("status") or status
            message = fault.get("message")
            if message is None:
                message = template.format(**self.message_fields(target, body))
            if form is not None:  # query protocol (STS, IAM): AWS's XML error shape
                err_type = "Receiver" if status >= 500 else "Sender"
                xml = (f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                       f"<Error><Type>{err_type}</Type><Code>{xml_escape(kind)}</Code>"
                       f"<Message>{xml_escape(message)}</Message></Error>"
                       f"<RequestId>{request_id}</RequestId></ErrorResponse>")
                return self.send(status, xml.encode(), [("Content-Type", "text/xml"),
                                                        ("x-amzn-RequestId", request_id)])
            payload = json.dumps({"__type": kind, "message": message}).encode()
            self.send(status, payload, [("Content-Type", "application/x-amz-json-1.1"),
                                        ("x-amzn-RequestId", request_id)])

        def message_fields(self, target, body):
            access_key, region, _ = self.scope()
            region = region or "us-east-1"
            try:
                key_id = str(json.loads(body or b"{}").get("KeyId", ""))
            except (ValueError, AttributeError):
                key_id = ""
            if not key_id:
                # Decrypt without KeyId: moto's blob starts with the 36-character key id.
                try:
                    blob = base64.b64decode(json.loads(body).get("CiphertextBlob", ""))
                    key_id = blob[:36].decode("ascii")
                except Exception:  # noqa: BLE001 - any garbage just leaves the id unknown
                    key_id = "00000000-0000-0000-0000-000000000000"
            if key_id.startswith("arn:"):
                key_arn = key_id
            elif key_id.startswith("alias/"):
                key_arn = f"arn:aws:kms:{region}:{account}:{key_id}"
            else:
                key_arn = f"arn:aws:kms:{region}:{account}:key/{key_id}"
            principal = key_to_user.get(access_key,
                                        f"arn:aws:sts::{account}:assumed-role/unknown/session")
            operation = target.rpartition(".")[2]
            return {"key_arn": key_arn, "principal": principal, "action": f"kms:{operation}"}

        # ---- forwarding -----------------------------------------------------------------
        def forward(self, target, body, form):
            headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP
                       and k.lower() != "content-length"]
            if (form is not None and form.get("Action") in UNSIGNED_STS_ACTIONS
                    and "Authorization" not in self.headers and web_signer):
                h = dict(headers)
                sigv4_sign(self.command, self.headers.get("Host", ""), self.path, h, body,
                           web_signer["access_key_id"], web_signer["secret_access_key"],
                           "us-east-1", "sts")
                headers = list(h.items())
            try:
                if ssl_ctx is not None:
                    conn = http.client.HTTPSConnection(upstream.hostname, upstream.port,
                                                       context=ssl_ctx, timeout=60)
                else:
                    conn = http.client.HTTPConnection(upstream.hostname, upstream.port,
                                                      timeout=60)
                conn.putrequest(self.command, self.path, skip_host=True,
                                skip_accept_encoding=True)
                for k, v in headers:
                    conn.putheader(k, v)
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                resp = conn.getresponse()
                data = resp.read()
                out = [(k, v) for k, v in resp.getheaders()
                       if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"]
                conn.close()
            except OSError as e:
                msg = f"kms_fault_proxy: upstream {args.upstream} failed: {e}"
                return self.send(502, msg.encode(), [("Content-Type", "text/plain")])
            state.count_forwarded(target)
            self.send(resp.status, data, out)

        # ---- control endpoint -----------------------------------------------------------
        def control(self, body):
            path = urllib.parse.urlsplit(self.path).path.rstrip("/")
            if path == "/__fault__" and self.command == "POST":
                try:
                    spec = json.loads(body or b"{}")
                    fault = {"target": str(spec["target"]), "kind": str(spec["kind"]),
                             "count": int(spec.get("count", 1)),
                             "delay_ms": int(spec.get("delay_ms", 0))}
                    if spec.get("message") is not None:
                        fault["message"] = str(spec["message"])
                    if spec.get("status") is not None:
                        fault["status"] = int(spec["status"])
                    if spec.get("key"):
                        fault["key"] = str(spec["key"])
                except (ValueError, KeyError, TypeError) as e:
                    return self.send_json(400, {"error": f"bad fault spec: {e!r}"})
                with state.lock:
                    state.faults.append(fault)
                return self.send_json(200, {"armed": fault})
            if path == "/__fault__" and self.command == "GET":
                with state.lock:
                    return self.send_json(200, {"faults": list(state.faults)})
            if path == "/__fault__/clear" and self.command == "POST":
                try:
                    only_key = json.loads(body or b"{}").get("key")
                except (ValueError, AttributeError):
                    only_key = None
                if only_key:
                    with state.lock:
                        state.faults[:] = [f for f in state.faults if f.get("key") != only_key]
                    return self.send_json(200, {"cleared": True, "key": only_key})
                with state.lock:
                    state.faults.clear()
                    state.requests.clear()
                    state.faulted.clear()
                    state.forwarded.clear()
                return self.send_json(200, {"cleared": True})
            if path == "/__fault__/stats" and self.command == "GET":
                with state.lock:
                    return self.send_json(200, {"requests": dict(state.requests),
                                                "faulted": dict(state.faulted),
                                                "forwarded": dict(state.forwarded)})
            self.send_json(404, {"error": f"unknown control request {self.command} {path}"})

    return Handler


def xml_escape(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", required=True, help="moto's URL, http(s)://127.0.0.1:PORT")
    ap.add_argument("--ca-file", default=None, help="CA that verifies moto's TLS certificate")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0 picks a free one")
    ap.add_argument("--setup", default=None, help="moto_setup.py's output (principals, signer)")
    args = ap.parse_args()
    setup = {}
    if args.setup:
        with open(args.setup) as f:
            setup = json.load(f)
    server = ThreadingHTTPServer(("127.0.0.1", args.port),
                                 make_handler(args, State(), setup))
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
