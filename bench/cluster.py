#!/usr/bin/python3
"""ekmd as a cluster, side by side in one run (docs/benchmarks.md, "Several replicas"):

  bash tests/peers/with_postgres.sh /usr/bin/python3 bench/cluster.py --build-dir build/bench

(bench/run.sh runs it so; without EKM_TEST_POSTGRES_URL it starts itself that way.)

  * store: the cache-hit data plane (POST encrypt and decrypt of 1 KiB, 16 connections) of one
    ekmd on its embedded SQLite beside one ekmd on PostgreSQL, under the same wrk;
  * replicas: one replica beside two on one PostgreSQL, each behind the same nginx load balancer
    (round robin, keep-alive to the replicas) and the same wrk;
  * cache miss: the first decrypt of each of N environments in a freshly started ekmd (its EK
    and DK read from the store and unwrapped under the CMK) beside the second (cached), on
    SQLite and on PostgreSQL;
  * slow tenant: the normal tenant's p99 under wrk, alone and while another tenant's requests
    wait on an AWS KMS (moto behind tests/peers/kms_fault_proxy.py) that takes 5 s per call.
Everything listens on 127.0.0.1 only; every process started here is stopped at exit. The AWS
peer needs the python3 with moto (this machine image's; EKM_PYTHON3 names another).
"""
import argparse
import base64
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import load  # noqa: E402  (bench/load.py: wrk, nginx and ekmd helpers)

ENV_PATH = "/v1/workspaces/bench/environments/prod"
B64 = base64.b64encode(load.PAYLOAD).decode()


def bodies(tmp, port, app_token, env_path=ENV_PATH, tag=""):
    """Request bodies for wrk: an encrypt of 1 KiB and the decrypt of one such ciphertext."""
    app = load.Api(port, app_token)
    enc = os.path.join(tmp, f"encrypt{tag}.json")
    with open(enc, "w") as f:
        json.dump({"plaintext": B64, "scope": "bench"}, f)
    ct = app.call("POST", env_path + "/encrypt", {"plaintext": B64, "scope": "bench"})["ciphertext"]
    dec = os.path.join(tmp, f"decrypt{tag}.json")
    with open(dec, "w") as f:
        json.dump({"ciphertext": ct}, f)
    return enc, dec


def run_wrk(port, token, op, body, duration, connections=16, env_path=ENV_PATH):
    return load.wrk(f"http://127.0.0.1:{port}{env_path}/{op}", connections, duration,
                    {"EKM_WRK_METHOD": "POST", "EKM_WRK_TOKEN": token,
                     "EKM_WRK_PATH": f"{env_path}/{op}", "EKM_WRK_BODY_FILE": body})


def summary(r):
    return {"rps": round(r["rps"]), "p50_us": r["latency_us"]["p50"],
            "p99_us": r["latency_us"]["p99"]}


def best(runs):
    """The better of the rounds: the machine's neighbours only ever slow a run down."""
    return max(runs, key=lambda r: r["rps"])


class Cluster:
    def __init__(self, build, tmp, procs, store_url):
        self.build, self.tmp, self.procs, self.store_url = build, tmp, procs, store_url
        self.root_key = os.path.join(tmp, "root.key")
        self.init_tokens = {}  # store URL -> the admin token `ekm init` printed

    def database(self, name):
        """A new empty database on the cluster: its URL."""
        psql = os.path.join(os.environ["EKM_TEST_POSTGRES_PGBIN"], "psql")
        subprocess.run([psql, "-q", self.store_url, "-c", f"CREATE DATABASE {name}"], check=True)
        return self.store_url.rsplit("/", 1)[0] + "/" + name

    def init_store(self, url):
        """`ekm --store URL --root-key-file F init`: the admin token it prints."""
        out = subprocess.run([os.path.join(self.build, "ekm"), "--store", url, "--root-key-file",
                              self.root_key, "init"], check=True, capture_output=True,
                             text=True).stdout
        return [x.split(": ", 1)[1] for x in out.splitlines() if x.startswith("admin token: ")][0]

    def bootstrap(self, port, data_dir, store=None):
        """The workspace `bench` with its environment `prod`, and an app token for it."""
        if store is None:
            tok_file = os.path.join(data_dir, "bootstrap-admin-token")
            for _ in range(500):
                if os.path.exists(tok_file) and os.path.getsize(tok_file) > 0:
                    break
                time.sleep(0.01)
            admin = load.Api(port, open(tok_file).read().split()[0])
        else:
            admin = load.Api(port, self.init_tokens[store])
        admin.call("POST", "/v1/workspaces", {"name": "bench"})
        admin.call("POST", "/v1/workspaces/bench/environments", {"name": "prod"})
        owner = load.Api(port, admin.call("POST", "/v1/tokens", {
            "workspace": "bench", "role": "owner", "description": "bench"})["token"])
        app = owner.call("POST", "/v1/tokens", {"workspace": "bench", "role": "app",
                                                "description": "bench"})
        return owner, app["token"]

    def ekmd(self, name, port, store=None, extra=(), env=None):
        """ekmd on its data dir's SQLite, or on the PostgreSQL database `store` (a URL)."""
        data_dir = os.path.join(self.tmp, name)
        args = ["--threads", "1", "--node-name", name, *extra]
        if store:
            if store not in self.init_tokens:
                self.init_tokens[store] = self.init_store(store)
            args += ["--store", store, "--root-key-file", self.root_key]
        if env:
            old = dict(os.environ)
            os.environ.update(env)
        try:
            p, _ = load.start_ekmd(self.procs, self.build, data_dir, port, args)
        except SystemExit:
            with open(os.path.join(self.tmp, f"ekmd-{port}.log")) as log:
                sys.stderr.write(f"ekmd {name} did not start:\n{log.read()[-2000:]}")
            raise
        finally:
            if env:
                os.environ.clear()
                os.environ.update(old)
        return p, data_dir


def nginx_balancer(procs, tmp, name, ports):
    """nginx (one worker) balancing round robin over the replicas, keep-alive both ways."""
    root = os.path.join(tmp, name)
    os.makedirs(root)
    port = load.free_port()
    user = "user root root;\n" if os.geteuid() == 0 else ""
    servers = "".join(f"server 127.0.0.1:{p};" for p in ports)
    conf = os.path.join(root, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""{user}worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {root}/body; proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi; uwsgi_temp_path {root}/uwsgi; scgi_temp_path {root}/scgi;
  upstream replicas {{ {servers} keepalive 64; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://replicas;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
""")
    p = procs.start(["nginx", "-p", root, "-c", conf, "-g", "daemon off;"],
                    open(os.path.join(root, "out.log"), "w"))
    load.wait_http(port, "/healthz", proc=p)
    return port


def timed_decrypts(port, token, cts):
    """Microseconds of each decrypt, one connection, in order."""
    api = load.Api(port, token)
    # The token is looked up once, before the clock runs (a 400: not a ciphertext).
    api.call("POST", ENV_PATH + "/decrypt", {"ciphertext": "AAAA"}, expect=(400,))
    out = []
    for path, ct in cts:
        t0 = time.perf_counter()
        api.call("POST", path + "/decrypt", {"ciphertext": ct})
        out.append((time.perf_counter() - t0) * 1e6)
    return out


def pct(values, p):
    v = sorted(values)
    return round(v[min(len(v) - 1, int(len(v) * p / 100))])


def cache_misses(cluster, name, port, store, n):
    """N environments with one ciphertext each, then a restarted ekmd decrypts each twice."""
    p, data_dir = cluster.ekmd(name, port, store=store)
    owner, app = cluster.bootstrap(port, data_dir, store)
    app_api = load.Api(port, app)
    cts = []
    for i in range(n):
        path = f"/v1/workspaces/bench/environments/m{i}"
        owner.call("POST", "/v1/workspaces/bench/environments", {"name": f"m{i}"})
        cts.append((path, app_api.call("POST", path + "/encrypt",
                                       {"plaintext": B64, "scope": "s"})["ciphertext"]))
    cluster.procs.stop(p)
    p, _ = cluster.ekmd(name, port, store=store)
    miss = timed_decrypts(port, app, cts)
    hit = timed_decrypts(port, app, cts)
    cluster.procs.stop(p)
    return {"environments": n, "miss_p50_us": pct(miss, 50), "miss_p99_us": pct(miss, 99),
            "hit_p50_us": pct(hit, 50), "hit_p99_us": pct(hit, 99)}


def start_aws_peer(procs, tmp):
    """moto_server with IAM checks on (tests/peers/moto_setup.py) behind the fault proxy."""
    py = os.environ.get("EKM_PYTHON3") or shutil.which("python3")
    if not py or subprocess.run([py, "-c", "import moto, boto3"],
                                capture_output=True).returncode != 0:
        return None, None
    moto_server = os.path.join(os.path.dirname(py), "moto_server")
    if not os.path.exists(moto_server):
        moto_server = shutil.which("moto_server")
    mport = load.free_port()
    procs.start([moto_server, "-H", "127.0.0.1", "-p", str(mport)],
                open(os.path.join(tmp, "moto.log"), "w"))
    load.wait_http(mport, "/moto-api/", timeout=30)
    moto = f"http://127.0.0.1:{mport}"
    setup = os.path.join(tmp, "setup.json")
    subprocess.run([py, os.path.join(ROOT, "tests/peers/moto_setup.py"), "--endpoint", moto,
                    "--out", setup], check=True, capture_output=True)
    out = open(os.path.join(tmp, "proxy.out"), "w+")
    procs.start([py, os.path.join(ROOT, "tests/peers/kms_fault_proxy.py"), "--upstream", moto,
                 "--port", "0", "--setup", setup], out)
    for _ in range(300):
        out.seek(0)
        line = out.readline().strip()
        if line.isdigit():
            break
        time.sleep(0.05)
    else:
        raise SystemExit("the fault proxy did not start")
    pport = int(line)
    load.wait_http(pport, "/__fault__/stats")
    return f"http://127.0.0.1:{pport}", json.load(open(setup))


def fault(proxy, body):
    req = urllib.request.Request(proxy + "/__fault__" + ("" if body else "/clear"),
                                 data=json.dumps(body or {}).encode(), method="POST")
    urllib.request.urlopen(req).read()


class SlowTenantClients:
    """`n` clients of the slow tenant, each sending encrypts one after the other and waiting
    what Retry-After says after a 503, as the client libraries do: what they cost ekmd is what
    waiting on a slow KMS costs, not a flood of instant retries."""

    def __init__(self, port, token, path, body, n):
        self.args = (port, token, path, body)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.statuses = {}
        self.latencies = []
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(n)]
        for t in self.threads:
            t.start()

    def run(self):
        port, token, path, body = self.args
        headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                c.request("POST", path, body=body, headers=headers)
                r = c.getresponse()
                r.read()
                status, retry = r.status, r.getheader("Retry-After")
                c.close()
            except OSError as e:
                status, retry = type(e).__name__, "1"
            with self.lock:
                self.statuses[status] = self.statuses.get(status, 0) + 1
                self.latencies.append(time.monotonic() - t0)
            if status != 200:
                self.stop.wait(float(retry or 1))

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()
        lat = sorted(self.latencies)
        return {"answers": {str(k): v for k, v in sorted(self.statuses.items(), key=str)},
                "median_s": round(lat[len(lat) // 2], 2) if lat else None}


def slow_tenant(cluster, port, duration, rounds, clients):
    """The normal tenant under wrk, alone and beside a tenant whose KMS takes 5 s a call."""
    procs, tmp = cluster.procs, cluster.tmp
    proxy, setup = start_aws_peer(procs, tmp)
    if proxy is None:
        print("slow tenant: skipped, no python3 with moto (this machine image's, or EKM_PYTHON3)",
              flush=True)
        return {"skipped": "no python3 with moto and boto3"}
    user = setup["users"]["ekm-platform"]
    env = {"AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": proxy,
           "AWS_ACCESS_KEY_ID": user["access_key_id"],
           "AWS_SECRET_ACCESS_KEY": user["secret_access_key"], "AWS_EC2_METADATA_DISABLED": "true"}
    # ekmd's defaults throughout: a KMS call attempt may take 5 s, all attempts 15 s.
    p, data_dir = cluster.ekmd("slow-tenant", port, env=env)
    owner, app = cluster.bootstrap(port, data_dir)
    owner.call("POST", "/v1/workspaces/bench/environments", {"name": "slow"})
    arn = setup["keys"]["main"]["arn"]
    slow_path = "/v1/workspaces/bench/environments/slow"
    owner.call("PUT", slow_path + "/key", {"aws_kms_arn": arn})
    enc, _ = bodies(tmp, port, app)
    slow_body = json.dumps({"plaintext": B64, "scope": "bench"})
    load.Api(port, app).call("POST", slow_path + "/encrypt", json.loads(slow_body))
    # From now on the slow tenant's KMS takes 5 s to answer each call; a restart empties the
    # key cache, so its EK must come from that KMS again (the normal tenant's platform key and
    # store are untouched).
    fault(proxy, {"target": "*", "kind": "timeout", "delay_ms": 5000, "count": -1,
                  "key": arn.rsplit("/", 1)[1]})
    procs.stop(p)
    p, _ = cluster.ekmd("slow-tenant", port, env=env)
    run_wrk(port, app, "encrypt", enc, 1)  # the normal tenant's EK back in the cache
    alone, beside, slow_runs = [], [], []
    for _ in range(rounds):
        alone.append(run_wrk(port, app, "encrypt", enc, duration))
        slow = SlowTenantClients(port, app, slow_path + "/encrypt", slow_body, clients)
        time.sleep(2)  # its requests fill the slow tenant's share of the blocking pool
        beside.append(run_wrk(port, app, "encrypt", enc, duration))
        slow_runs.append(slow.finish())
    stats = json.loads(urllib.request.urlopen(proxy + "/__fault__/stats").read())
    procs.stop(p)
    med = lambda runs, k: statistics.median(r["latency_us"][k] for r in runs)  # noqa: E731
    return {"alone": [summary(r) for r in alone], "beside_slow": [summary(r) for r in beside],
            "slow_tenant": slow_runs, "slow_tenant_clients": clients,
            "kms_calls_delayed": stats.get("faulted", {}),
            "p99_alone_us": med(alone, "p99"), "p99_beside_us": med(beside, "p99"),
            "p99_ratio": round(med(beside, "p99") / med(alone, "p99"), 2),
            "rps_ratio": round(statistics.median(r["rps"] for r in beside) /
                               statistics.median(r["rps"] for r in alone), 2),
            "kms_delay_ms": 5000}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default="build/bench")
    ap.add_argument("--out", default="build/bench-results/cluster.json")
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of each side-by-side pair")
    ap.add_argument("--miss-environments", type=int, default=200)
    ap.add_argument("--slow-clients", type=int, default=64,
                    help="concurrent clients of the slow tenant")
    ap.add_argument("--only", choices=["store", "replicas", "miss", "slow"], action="append",
                    help="run only these parts (repeatable)")
    args = ap.parse_args()
    if not os.environ.get("EKM_TEST_POSTGRES_URL"):
        os.execvp("bash", ["bash", os.path.join(ROOT, "tests/peers/with_postgres.sh"),
                           sys.executable, *sys.argv])
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: run scripts/install-deps.sh --bench")
    parts = set(args.only or ["store", "replicas", "miss", "slow"])
    build = os.path.abspath(args.build_dir)
    tmp = tempfile.mkdtemp(prefix="ekm-cluster-")
    procs = load.Processes()
    results = {"machine": {"cpus": os.cpu_count()}}
    cluster = Cluster(build, tmp, procs, os.environ["EKM_TEST_POSTGRES_URL"])
    try:
        if parts & {"store", "replicas"}:
            sport, pport = load.free_port(), load.free_port()
            _, sdir = cluster.ekmd("sqlite", sport)
            _, sapp = cluster.bootstrap(sport, sdir)
            _, pdir = cluster.ekmd("pg-1", pport, store=cluster.store_url)
            _, papp = cluster.bootstrap(pport, pdir, cluster.store_url)
            senc, sdec = bodies(tmp, sport, sapp, tag="-sqlite")
            penc, pdec = bodies(tmp, pport, papp, tag="-pg")
        if "store" in parts:
            res = results["store"] = {}
            for op in ("encrypt", "decrypt"):
                runs = {"sqlite": [], "postgresql": []}
                for _ in range(args.rounds):
                    runs["sqlite"].append(run_wrk(sport, sapp, op, senc if op == "encrypt" else
                                                  sdec, args.duration))
                    runs["postgresql"].append(run_wrk(pport, papp, op, penc if op == "encrypt"
                                                      else pdec, args.duration))
                res[op] = {k: summary(best(v)) for k, v in runs.items()}
                res[op]["ratio"] = round(res[op]["postgresql"]["rps"] / res[op]["sqlite"]["rps"], 2)
                print(f"store, {op} 1 KiB: {res[op]}", flush=True)
        if "replicas" in parts:
            p2 = load.free_port()
            cluster.ekmd("pg-2", p2, store=cluster.store_url)
            one = nginx_balancer(procs, tmp, "lb-one", [pport])
            two = nginx_balancer(procs, tmp, "lb-two", [pport, p2])
            res = results["replicas"] = {}
            for op in ("encrypt", "decrypt"):
                runs = {"one": [], "two": []}
                body = penc if op == "encrypt" else pdec
                run_wrk(two, papp, op, body, 1, connections=32)  # warms the second replica
                for _ in range(args.rounds):
                    runs["one"].append(run_wrk(one, papp, op, body, args.duration, 32))
                    runs["two"].append(run_wrk(two, papp, op, body, args.duration, 32))
                res[op] = {k: summary(best(v)) for k, v in runs.items()}
                res[op]["ratio"] = round(res[op]["two"]["rps"] / res[op]["one"]["rps"], 2)
                print(f"replicas behind nginx, {op} 1 KiB: {res[op]}", flush=True)
        if parts & {"store", "replicas"}:
            procs.stop_all()
            procs.procs.clear()
        if "miss" in parts:
            n = args.miss_environments
            results["miss"] = {
                "sqlite": cache_misses(cluster, "miss-sqlite", load.free_port(), None, n),
                "postgresql": cache_misses(cluster, "miss-pg", load.free_port(),
                                           cluster.database("ekm_miss"), n)}
            print(f"cache miss: {results['miss']}", flush=True)
        if "slow" in parts:
            results["slow"] = slow_tenant(cluster, load.free_port(), args.duration,
                                          max(args.rounds, 3), args.slow_clients)
            print(f"slow tenant: {json.dumps(results['slow'])}", flush=True)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"results in {args.out}")


if __name__ == "__main__":
    main()
