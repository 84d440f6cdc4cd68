#!/usr/bin/python3
"""Server-side benchmarks of ekmd, side by side with Debian's nginx under the same wrk.

  /usr/bin/python3 bench/load.py --build-dir build/bench --out build/bench-results/load.json

Measures, in one run on this machine:
  * nginx serving a static 1 KiB file (keep-alive): the most any HTTP service can do here;
  * ekmd POST …/encrypt and …/decrypt of 1 KiB (JSON, base64), keep-alive, 16 and 64
    connections, and …/encrypt/batch with 100 items of 1 KiB a request, with one I/O thread
    and with its default (one per core); nginx likewise with one worker and one per core;
  * the same over TLS 1.3 (keep-alive; one self-signed P-256 certificate for both): nginx
    serving the 1 KiB file and ekmd encrypt and decrypt of 1 KiB, at 16 and 64 connections;
  * ekmd's cold start (process start to its first answer on /healthz) and its resident memory
    with 10 000 environments' keys cached.
Everything listens on 127.0.0.1 only; every process started here is stopped at exit. Only the
standard library: this runs under Debian's /usr/bin/python3.
"""
import argparse
import base64
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LUA = os.path.join(HERE, "wrk", "request.lua")
PAYLOAD = bytes((i * 7 + 3) & 0xFF for i in range(1024))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connection(port, timeout, tls=None):
    """An HTTP connection to 127.0.0.1:port; over TLS when tls is the certificate to trust."""
    if tls is None:
        return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    ctx = ssl.create_default_context(cafile=tls)
    ctx.check_hostname = False  # the bench certificate names 127.0.0.1 as an IP, not a host
    return http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)


def wait_http(port, path="/healthz", timeout=20.0, proc=None, tls=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"process exited with {proc.returncode} before answering")
        try:
            c = connection(port, 1, tls)
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            c.close()
            return r.status
        except OSError:
            time.sleep(0.001)
    raise SystemExit(f"nothing answered on 127.0.0.1:{port}{path} within {timeout} s")


class Api:
    def __init__(self, port, token=None, tls=None):
        self.conn = connection(port, 30, tls)
        self.token = token

    def call(self, method, path, body=None, expect=(200, 201)):
        headers = {}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        text = r.read()
        if r.status not in expect:
            raise SystemExit(f"{method} {path}: HTTP {r.status}: {text[:300]!r}")
        return json.loads(text) if text else None


def wrk(url, connections, duration, env_extra, threads=2):
    env = dict(os.environ)
    env.update(env_extra)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "-s", LUA, url]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    line = [l for l in out.splitlines() if l.startswith("{")][-1]
    r = json.loads(line)
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["connections"] = connections
    r["errors_total"] = sum(r["errors"].values())
    if r["errors"]["status"] or r["errors"]["connect"]:
        raise SystemExit(f"wrk against {url}: {r['errors']} (a wrong request or a limit): "
                         "these numbers would not measure the service")
    return r


class Processes:
    def __init__(self):
        self.procs = []

    def start(self, cmd, log, **kw):
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def stop_all(self):
        for p in reversed(self.procs):
            self.stop(p)


def make_certificate(tmp):
    """A self-signed P-256 certificate for 127.0.0.1 (what nginx and ekmd both serve)."""
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    os.chmod(key, 0o600)
    return cert, key


def start_nginx(procs, tmp, workers, tls=None):
    """nginx serving /1k; over TLS 1.3 only when tls is (cert, key)."""
    root = os.path.join(tmp, f"nginx-{workers}{'-tls' if tls else ''}")
    os.makedirs(os.path.join(root, "html"))
    with open(os.path.join(root, "html", "1k"), "wb") as f:
        f.write(PAYLOAD)
    port = free_port()
    user = "user root root;\n" if os.geteuid() == 0 else ""
    conf = os.path.join(root, "nginx.conf")
    listen_tls, tls_conf = "", ""
    if tls:
        listen_tls = " ssl"
        tls_conf = (f"ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]}; "
                    "ssl_protocols TLSv1.3;")
    with open(conf, "w") as f:
        f.write(f"""{user}worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path {root}/body; proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi; uwsgi_temp_path {root}/uwsgi; scgi_temp_path {root}/scgi;
  server {{
    listen 127.0.0.1:{port}{listen_tls};
    {tls_conf}
    root {root}/html;
    location / {{ default_type application/octet-stream; }}
  }}
}}
""")
    p = procs.start(["nginx", "-p", root, "-c", conf, "-g", "daemon off;"],
                    open(os.path.join(root, "out.log"), "w"))
    wait_http(port, "/1k", proc=p, tls=tls[0] if tls else None)
    return p, port


def start_ekmd(procs, build, data_dir, port, extra=(), tls=None):
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    cmd = [os.path.join(build, "ekmd"), "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}",
           "--rate-limit", "0", "--log-level", "warn", *extra]
    if tls:
        cmd += ["--tls-cert", tls[0], "--tls-key", tls[1]]
    t0 = time.monotonic()
    p = procs.start(cmd, open(os.path.join(data_dir, "..", f"ekmd-{port}.log"), "a"))
    wait_http(port, proc=p, tls=tls[0] if tls else None)
    return p, time.monotonic() - t0


def bootstrap(port, data_dir):
    tok_file = os.path.join(data_dir, "bootstrap-admin-token")
    for _ in range(200):
        if os.path.exists(tok_file) and os.path.getsize(tok_file) > 0:
            break
        time.sleep(0.01)
    admin = Api(port, open(tok_file).read().split()[0])
    admin.call("POST", "/v1/workspaces", {"name": "bench"})
    admin.call("POST", "/v1/workspaces/bench/environments", {"name": "prod"})
    # The admin creates the workspace's owner, the owner the app token (docs/api.md).
    owner = Api(port, admin.call("POST", "/v1/tokens", {"workspace": "bench", "role": "owner",
                                                        "description": "bench"})["token"])
    app = owner.call("POST", "/v1/tokens", {"workspace": "bench", "role": "app",
                                            "description": "bench"})
    return admin, app["token"]


def load_runs(runs, port, app_token, duration, tmp, label, tls=None):
    """wrk against encrypt and decrypt of 1 KiB at 16 and 64 connections, and batches (plain
    HTTP only: over TLS the batch is the same work with one record more)."""
    app = Api(port, app_token, tls=tls[0] if tls else None)
    env_path = "/v1/workspaces/bench/environments/prod"
    base = f"{'https' if tls else 'http'}://127.0.0.1:{port}{env_path}"
    b64 = base64.b64encode(PAYLOAD).decode()
    enc_body = os.path.join(tmp, "encrypt.json")
    with open(enc_body, "w") as f:
        json.dump({"plaintext": b64, "scope": "bench"}, f)
    ct = app.call("POST", env_path + "/encrypt", {"plaintext": b64, "scope": "bench"})["ciphertext"]
    dec_body = os.path.join(tmp, "decrypt.json")
    with open(dec_body, "w") as f:
        json.dump({"ciphertext": ct}, f)
    batch_body = os.path.join(tmp, "batch.json")
    with open(batch_body, "w") as f:
        json.dump({"items": [{"plaintext": b64, "scope": "bench"}] * 100}, f)
    common = {"EKM_WRK_METHOD": "POST", "EKM_WRK_TOKEN": app_token}
    for name, path, body in (("encrypt_1k", "/encrypt", enc_body),
                             ("decrypt_1k", "/decrypt", dec_body)):
        for c in (16, 64):
            r = wrk(base + path, c, duration,
                    dict(common, EKM_WRK_PATH=env_path + path, EKM_WRK_BODY_FILE=body))
            runs[f"{name}_c{c}"] = r
            print(f"{label} {name}, {c} connections: {r['rps']:.0f} req/s, "
                  f"p99 {r['latency_us']['p99']} µs", flush=True)
    if tls:
        return
    r = wrk(base + "/encrypt/batch", 16, duration,
            dict(common, EKM_WRK_PATH=env_path + "/encrypt/batch", EKM_WRK_BODY_FILE=batch_body))
    r["items_per_second"] = r["rps"] * 100
    runs["encrypt_batch100_1k_c16"] = r
    print(f"{label} encrypt/batch (100 x 1 KiB), 16 connections: {r['rps']:.0f} req/s = "
          f"{r['items_per_second']:.0f} items/s", flush=True)


def nginx_runs(procs, tmp, results, duration, tls=None):
    """nginx with one worker and with one per core: the better of the two is the baseline."""
    scheme, label = ("https", "TLS nginx") if tls else ("http", "nginx")
    for workers in ("1", "auto"):
        nginx, nport = start_nginx(procs, tmp, workers, tls)
        runs = results[f"workers_{workers}"] = {}
        for c in (16, 64):
            r = wrk(f"{scheme}://127.0.0.1:{nport}/1k", c, duration,
                    {"EKM_WRK_METHOD": "GET", "EKM_WRK_PATH": "/1k"})
            runs[f"static_1k_c{c}"] = r
            print(f"{label} ({workers} worker) static 1 KiB, {c} connections: "
                  f"{r['rps']:.0f} req/s, p99 {r['latency_us']['p99']} µs", flush=True)
        procs.stop(nginx)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default="build/bench")
    ap.add_argument("--out", default="build/bench-results/load.json")
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--environments", type=int, default=10000,
                    help="environments whose keys are cached for the memory figure")
    ap.add_argument("--skip-tls", action="store_true", help="no TLS rows")
    ap.add_argument("--only-tls", action="store_true",
                    help="only the TLS rows (nginx and ekmd over TLS; no memory or start figures)")
    args = ap.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: run scripts/install-deps.sh --bench")
    build = os.path.abspath(args.build_dir)

    tmp = tempfile.mkdtemp(prefix="ekm-load-")
    procs = Processes()
    results = {"machine": {"cpus": os.cpu_count()}, "wrk": {}, "nginx": {}, "ekmd": {},
               "tls": {"nginx": {}, "ekmd": {}}}
    tls = make_certificate(tmp)
    try:
        if not args.only_tls:
            nginx_runs(procs, tmp, results["nginx"], args.duration)
        # ekmd with one I/O thread (wrk has the other core) and with its default, one per core.
        data_dir = os.path.join(tmp, "ekmd-data")
        port = free_port()
        for threads in ("1", "default"):
            extra = ["--threads", "1"] if threads == "1" else []
            ekmd, _ = start_ekmd(procs, build, data_dir, port, extra)
            if threads == "1":
                admin, app_token = bootstrap(port, data_dir)
            if args.only_tls:
                break
            runs = results["ekmd"][f"threads_{threads}"] = {}
            load_runs(runs, port, app_token, args.duration, tmp, f"ekmd ({threads} thread)")
            if threads == "default":
                break  # keep it running for the memory figures
            procs.stop(ekmd)
        # wrk's own requests were all under one token and environment; the key cache is warm.
        results["ekmd"]["rss_after_load_kib"] = rss_kib(ekmd.pid)
        # The same over TLS 1.3: nginx and ekmd serve one certificate; wrk negotiates TLS 1.3
        # (nginx allows only 1.3; ekmd prefers it) and keeps each connection alive.
        if not args.skip_tls:
            procs.stop(ekmd)
            nginx_runs(procs, tmp, results["tls"]["nginx"], args.duration, tls)
            for threads in ("1", "default"):
                extra = ["--threads", "1"] if threads == "1" else []
                ekmd, _ = start_ekmd(procs, build, data_dir, port, extra, tls)
                runs = results["tls"]["ekmd"][f"threads_{threads}"] = {}
                load_runs(runs, port, app_token, args.duration, tmp,
                          f"TLS ekmd ({threads} thread)", tls)
                procs.stop(ekmd)
            if args.only_tls:
                return finish(results, args.out, procs, tmp)
            ekmd, _ = start_ekmd(procs, build, data_dir, port)
        admin = Api(port, admin.token)
        app = Api(port, app_token)

        # Resident memory with N environments' keys cached: one EK and one DK each.
        t0 = time.monotonic()
        for i in range(args.environments):
            name = f"e{i}"
            admin.call("POST", "/v1/workspaces/bench/environments", {"name": name})
            app.call("POST", f"/v1/workspaces/bench/environments/{name}/encrypt",
                     {"plaintext": "aGk="})
        stats = admin.call("GET", "/v1/key-cache")
        results["ekmd"]["cached_environments"] = {
            "environments": args.environments,
            "rss_kib": rss_kib(ekmd.pid),
            "key_cache": stats,
            "setup_seconds": time.monotonic() - t0,
        }
        print(f"ekmd RSS with {args.environments} environments' keys cached: "
              f"{rss_kib(ekmd.pid) / 1024:.1f} MiB", flush=True)
        procs.stop(ekmd)

        # Cold start: a fresh process on the same (now larger) data directory, and on a new one.
        starts = []
        for i in range(5):
            p, seconds = start_ekmd(procs, build, data_dir, port)
            starts.append(seconds)
            if i == 0:
                results["ekmd"]["rss_idle_kib"] = rss_kib(p.pid)
            procs.stop(p)
        fresh = []
        for i in range(5):
            d = os.path.join(tmp, f"fresh-{i}")
            p, seconds = start_ekmd(procs, build, d, free_port())
            fresh.append(seconds)
            procs.stop(p)
        results["ekmd"]["cold_start_seconds"] = {"existing_data_dir": sorted(starts),
                                                 "new_data_dir": sorted(fresh)}
        print(f"ekmd cold start to first answer: median {sorted(starts)[2] * 1000:.1f} ms "
              f"(new data dir: {sorted(fresh)[2] * 1000:.1f} ms)", flush=True)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    finish(results, args.out, procs, tmp)


def finish(results, out, procs, tmp):
    procs.stop_all()
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
