#!/usr/bin/python3
"""Turns bench/run.sh's results into the tables and plots of docs/benchmarks.md.

  /usr/bin/python3 bench/report.py --results build/bench-results --out docs/benchmarks

Reads machine.txt, openssl.txt, library.json, key_cache.json, provider_calls.jsonl,
repack.jsonl and load.json from --results; writes results.md (the tables, each figure beside
its baseline and target), results.json (everything, for diffs between runs) and PNG plots to
--out. Debian's python3-matplotlib draws the plots (scripts/install-deps.sh --bench).
"""
import argparse
import json
import os
import re
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SIZES = [64, 1024, 16384, 1048576]
SIZE_NAMES = {64: "64 B", 1024: "1 KiB", 16384: "16 KiB", 1048576: "1 MiB"}
GB = 1e9


def load_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


def openssl(results):
    """{(size, processes): [bytes/s, ...]} from 'size processes bytes_per_second' lines."""
    out = {}
    with open(os.path.join(results, "openssl.txt")) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2]:
                out.setdefault((int(parts[0]), int(parts[1])), []).append(float(parts[2]))
    return {k: statistics.median(v) for k, v in out.items()}


def gbench(path):
    """{(benchmark, arg, threads): {"bps":…, "real_ns":…, "cpu_ns":…}}, medians."""
    with open(path) as f:
        data = json.load(f)
    runs = {}
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        m = re.match(r"BM_(\w+)(?:/(\d+))?(?:/repeats:\d+)?/real_time/threads:(\d+)",
                     b.get("run_name", b["name"]))
        if not m:
            continue
        key = (m.group(1), int(m.group(2) or 0), int(m.group(3)))
        runs.setdefault(key, []).append(b)
    out = {}
    for key, bs in runs.items():
        med = [b for b in bs if b.get("aggregate_name") == "median"] or bs
        out[key] = {
            "bps": statistics.median(b.get("bytes_per_second", 0) for b in med),
            "real_ns": statistics.median(b["real_time"] for b in med),
            "cpu_ns": statistics.median(b["cpu_time"] for b in med),
        }
    return out


def mark(ok):
    return "met" if ok else "**not met**"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default="build/bench-results")
    ap.add_argument("--out", default="docs/benchmarks")
    ap.add_argument("--doc", default="",
                    help="also replace the region between <!-- results:begin --> and "
                         "<!-- results:end --> of this markdown file with the tables")
    args = ap.parse_args()
    r = args.results
    os.makedirs(args.out, exist_ok=True)
    machine = open(os.path.join(r, "machine.txt")).read().strip()
    ossl = openssl(r)
    lib = gbench(os.path.join(r, "library.json"))
    cache = gbench(os.path.join(r, "key_cache.json"))
    provider = load_jsonl(os.path.join(r, "provider_calls.jsonl"))
    repack = load_jsonl(os.path.join(r, "repack.jsonl"))
    load = json.load(open(os.path.join(r, "load.json")))
    md = [f"<!-- written by bench/report.py from {r}; do not edit by hand -->",
          "```", machine, "```", ""]

    # --- library vs openssl speed -------------------------------------------------------
    md += ["### Library throughput beside `openssl speed -evp aes-256-gcm` (one thread)", "",
           "| size | openssl speed | crypto seal | envelope seal | **service encrypt** | "
           "**service decrypt** | encrypt ÷ openssl | decrypt ÷ openssl | target |",
           "|---|---|---|---|---|---|---|---|---|"]
    summary = {"library": {}, "threads": {}}
    for size in SIZES:
        base = ossl.get((size, 1))
        enc = lib.get(("ServiceEncrypt", size, 1), {}).get("bps")
        dec = lib.get(("ServiceDecrypt", size, 1), {}).get("bps")
        if not base or not enc or not dec:
            continue
        target = 0.9 if size >= 16384 else 0.5 if size == 64 else None
        worst = min(enc, dec) / base
        cell = f"≥ {target}×: {mark(worst >= target)}" if target else "—"
        md.append(
            f"| {SIZE_NAMES[size]} | {base / GB:.2f} GB/s | "
            f"{lib[('CryptoSeal', size, 1)]['bps'] / GB:.2f} | "
            f"{lib[('EnvelopeSeal', size, 1)]['bps'] / GB:.2f} | {enc / GB:.2f} | {dec / GB:.2f} | "
            f"{enc / base:.2f}× | {dec / base:.2f}× | {cell} |")
        summary["library"][size] = {"openssl": base, "encrypt": enc, "decrypt": dec}
    md += ["", "### One thread to two (aggregate throughput, 2 threads ÷ 1 thread)", "",
           "| size | openssl speed -multi 2 | service encrypt | service decrypt | target |",
           "|---|---|---|---|---|"]
    for size in SIZES:
        try:
            o = ossl[(size, 2)] / ossl[(size, 1)]
            e = lib[("ServiceEncrypt", size, 2)]["bps"] / lib[("ServiceEncrypt", size, 1)]["bps"]
            d = lib[("ServiceDecrypt", size, 2)]["bps"] / lib[("ServiceDecrypt", size, 1)]["bps"]
        except KeyError:
            continue
        md.append(f"| {SIZE_NAMES[size]} | {o:.2f}× | {e:.2f}× | {d:.2f}× | "
                  f"≥ 1.8×: {mark(min(e, d) >= 1.8)} |")
        summary["threads"][size] = {"openssl": o, "encrypt": e, "decrypt": d}

    # --- key cache -------------------------------------------------------------------------
    md += ["", "### Key cache hit (median of 9 runs, ns per lookup)", "",
           "| lookup | one thread | two threads at once, per lookup | target (one thread) |",
           "|---|---|---|---|"]
    for name, label in (("KeyCacheHitCurrentDataKey", "current DK (encrypt path)"),
                        ("KeyCacheHitDataKeyVersion", "DK version (decrypt path)"),
                        ("KeyCacheHitEnvironment", "environment record")):
        one = cache.get((name, 0, 1))
        two = cache.get((name, 0, 2))
        if one and two:
            md.append(f"| {label} | {one['real_ns']:.0f} | {two['cpu_ns']:.0f} | "
                      f"≤ 200 ns: {mark(one['real_ns'] <= 200)} |")

    # --- provider calls ----------------------------------------------------------------------
    md += ["", "### Provider (AWS KMS on moto) calls per million data-plane operations", "",
           "| key cache | TTL | operations | provider calls | per million | operations/s | target |",
           "|---|---|---|---|---|---|---|"]
    for p in provider:
        if p["mode"] == "cache":
            target = f"none per operation: {mark(p['provider_calls'] == 0)}"
        elif p["ttl_seconds"] > 0:
            most = int(p["seconds"] / p["ttl_seconds"]) + 1
            target = (f"≤ 1 per environment per TTL (≤ {most}): "
                      f"{mark(p['provider_calls'] <= most)}")
        else:
            target = "— (what the cache saves)"
        md.append(f"| {p['mode']} | {p['ttl_seconds']} s | {p['operations']:,} | "
                  f"{p['provider_calls']:,} | {p['calls_per_million']:,.1f} | "
                  f"{p['operations_per_second']:,.0f} | {target} |")

    # --- repack ------------------------------------------------------------------------------
    md += ["", "### Repack on SQLite (one environment, EK rotated, every DK re-wrapped)", "",
           "| DKs | seconds | DKs/s | target |", "|---|---|---|---|"]
    # (the time per DK at the largest size over the smallest: 1.0 is exactly linear)
    for x in repack:
        md.append(f"| {x['dks']:,} | {x['seconds']:.2f} | {x['dks_per_second']:,.0f} | "
                  f"≥ 50 000/s: {mark(x['dks_per_second'] >= 50000)} |")
    if len(repack) >= 2:
        a, b = repack[0], repack[-1]
        growth = (b["seconds"] / a["seconds"]) / (b["dks"] / a["dks"])
        md.append(f"\nTime grows {b['seconds'] / a['seconds']:.1f}× for {b['dks'] / a['dks']:.0f}× "
                  f"the DKs (1.0 would be exactly linear: {growth:.2f}).")

    # --- server ------------------------------------------------------------------------------
    ng, ek = load["nginx"], load["ekmd"]
    base = {c: max(ng[w][f"static_1k_c{c}"]["rps"] for w in ng) for c in (16, 64)}
    md += ["", "### ekmd under wrk beside nginx (1 KiB, keep-alive, wrk -t2 on the same 2 cores)",
           "", "The baseline of each row is the better nginx at that connection count.", "",
           "| server, request | connections | requests/s | ÷ nginx | p50 | p99 | targets |",
           "|---|---|---|---|---|---|---|"]

    def ms(us):
        return f"{us / 1000:.2f} ms"

    def nginx_rows(runs, baseline, how):
        """nginx's rows: one and one worker per core, at 16 and 64 connections."""
        for w, label in (("workers_1", "1 worker"), ("workers_auto", "1 worker per core")):
            for c in (16, 64):
                n = runs[w][f"static_1k_c{c}"]
                md.append(f"| nginx ({label}){how}, GET static 1 KiB | {c} | {n['rps']:,.0f} | "
                          f"{n['rps'] / baseline[c]:.2f}× | {ms(n['latency_us']['p50'])} | "
                          f"{ms(n['latency_us']['p99'])} | — |")

    nginx_rows(ng, base, "")
    for t, label in (("threads_1", "--threads 1"), ("threads_default", "default: 1 thread per core")):
        runs = ek[t]
        for c in (16, 64):
            for op in ("encrypt", "decrypt"):
                e = runs[f"{op}_1k_c{c}"]
                ratio = e["rps"] / base[c]
                targets = f"≥ 0.5×: {mark(ratio >= 0.5)}; ≥ 15 000/s: {mark(e['rps'] >= 15000)}"
                if c == 16:
                    targets += f"; p99 ≤ 2 ms: {mark(e['latency_us']['p99'] <= 2000)}"
                md.append(f"| ekmd ({label}), POST {op} 1 KiB | {c} | {e['rps']:,.0f} | "
                          f"{ratio:.2f}× | {ms(e['latency_us']['p50'])} | "
                          f"{ms(e['latency_us']['p99'])} | {targets} |")
        b = runs["encrypt_batch100_1k_c16"]
        md.append(f"| ekmd ({label}), POST encrypt/batch 100 × 1 KiB | 16 | {b['rps']:,.0f} "
                  f"(= {b['items_per_second']:,.0f} items/s) | — | {ms(b['latency_us']['p50'])} | "
                  f"{ms(b['latency_us']['p99'])} | — |")
    # --- server over TLS 1.3 ---------------------------------------------------------------------
    tls = load.get("tls", {})
    if tls.get("nginx") and tls.get("ekmd"):
        tn, te = tls["nginx"], tls["ekmd"]
        tbase = {c: max(tn[w][f"static_1k_c{c}"]["rps"] for w in tn) for c in (16, 64)}
        md += ["", "### The same over TLS 1.3 (one self-signed P-256 certificate, keep-alive)", "",
               "The baseline of each row is the better nginx over TLS at that connection count; "
               "the target is ekmd's better configuration at ≥ 0.8× of it.", "",
               "| server, request | connections | requests/s | ÷ nginx (TLS) | p50 | p99 | target |",
               "|---|---|---|---|---|---|---|"]
        nginx_rows(tn, tbase, ", TLS")
        best = {(c, op): max(te[t][f"{op}_1k_c{c}"]["rps"] for t in te)
                for c in (16, 64) for op in ("encrypt", "decrypt")}
        for t, label in (("threads_1", "--threads 1"),
                         ("threads_default", "default: 1 thread per core")):
            for c in (16, 64):
                for op in ("encrypt", "decrypt"):
                    e = te[t][f"{op}_1k_c{c}"]
                    ratio = e["rps"] / tbase[c]
                    target = "—"
                    if e["rps"] == best[(c, op)]:
                        target = f"≥ 0.8×: {mark(ratio >= 0.8)}"
                    md.append(f"| ekmd ({label}), TLS, POST {op} 1 KiB | {c} | {e['rps']:,.0f} | "
                              f"{ratio:.2f}× | {ms(e['latency_us']['p50'])} | "
                              f"{ms(e['latency_us']['p99'])} | {target} |")
    ce = ek["cached_environments"]
    cs = ek["cold_start_seconds"]
    md += ["", "### ekmd start and memory", "",
           "| figure | value |", "|---|---|",
           f"| cold start to first answer (existing data dir, median of 5) | "
           f"{statistics.median(cs['existing_data_dir']) * 1000:.0f} ms |",
           f"| cold start, new data dir (creates store and keys; median of 5) | "
           f"{statistics.median(cs['new_data_dir']) * 1000:.0f} ms |",
           f"| resident memory, idle after start | {ek['rss_idle_kib'] / 1024:.1f} MiB |",
           f"| resident memory, {ce['environments']:,} environments' keys cached "
           f"({ce['key_cache']['entries']:,} cached keys) | {ce['rss_kib'] / 1024:.1f} MiB |"]

    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    if args.doc:
        text = open(args.doc).read()
        begin, end = "<!-- results:begin -->", "<!-- results:end -->"
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            _, tail = rest.split(end, 1)
            with open(args.doc, "w") as f:
                f.write(head + begin + "\n" + "\n".join(md) + "\n" + end + tail)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"machine": machine, "openssl": {f"{k[0]}x{k[1]}": v for k, v in ossl.items()},
                   "library": {f"{k[0]}/{k[1]}/t{k[2]}": v for k, v in lib.items()},
                   "key_cache": {f"{k[0]}/t{k[2]}": v for k, v in cache.items()},
                   "provider_calls": provider, "repack": repack, "load": load},
                  f, indent=1, sort_keys=True)

    # --- plots -------------------------------------------------------------------------------
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [s for s in SIZES if (s, 1) in ossl]
    ax.plot(xs, [ossl[(s, 1)] / GB for s in xs], "k--o", label="openssl speed -evp aes-256-gcm")
    for name, style in (("CryptoSeal", ":s"), ("EnvelopeSeal", ":^"), ("ServiceEncrypt", "-o"),
                        ("ServiceDecrypt", "-x")):
        ys = [lib.get((name, s, 1), {}).get("bps", 0) / GB for s in xs]
        ax.plot(xs, ys, style, label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [SIZE_NAMES[s] for s in xs])
    ax.set_ylabel("GB/s, one thread")
    ax.set_title("AES-256-GCM: ekm's layers beside openssl speed")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "library_throughput.png"), dpi=100)

    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.25
    for i, (label, key) in enumerate((("openssl -multi 2", "openssl"), ("service encrypt", "encrypt"),
                                      ("service decrypt", "decrypt"))):
        sizes = list(summary["threads"])
        ax.bar([j + (i - 1) * width for j in range(len(sizes))],
               [summary["threads"][s][key] for s in sizes], width, label=label)
    ax.axhline(1.8, color="red", linestyle="--", linewidth=1, label="target 1.8×")
    ax.set_xticks(range(len(summary["threads"])), [SIZE_NAMES[s] for s in summary["threads"]])
    ax.set_ylabel("throughput, 2 threads ÷ 1 thread")
    ax.set_title("Scaling from one thread to two")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "thread_scaling.png"), dpi=100)

    fig, ax = plt.subplots(figsize=(8, 4))
    labels, values, colors = [], [], []
    for c in (16, 64):
        labels += [f"nginx\n1 worker\nc{c}", f"nginx\nper core\nc{c}",
                   f"ekmd 1 thr\nencrypt\nc{c}", f"ekmd 1 thr\ndecrypt\nc{c}",
                   f"ekmd default\nencrypt\nc{c}", f"ekmd default\ndecrypt\nc{c}"]
        values += [ng["workers_1"][f"static_1k_c{c}"]["rps"],
                   ng["workers_auto"][f"static_1k_c{c}"]["rps"],
                   ek["threads_1"][f"encrypt_1k_c{c}"]["rps"],
                   ek["threads_1"][f"decrypt_1k_c{c}"]["rps"],
                   ek["threads_default"][f"encrypt_1k_c{c}"]["rps"],
                   ek["threads_default"][f"decrypt_1k_c{c}"]["rps"]]
        colors += ["grey", "darkgrey", "tab:blue", "tab:orange", "lightsteelblue", "navajowhite"]
    ax.bar(range(len(values)), values, color=colors)
    ax.set_xticks(range(len(values)), labels, fontsize=6)
    ax.axhline(15000, color="red", linestyle="--", linewidth=1, label="target 15 000/s")
    ax.set_ylabel("requests/s (1 KiB, keep-alive)")
    ax.set_title("ekmd beside nginx under the same wrk")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "server_rps.png"), dpi=100)

    if repack:
        fig, ax = plt.subplots(figsize=(7, 4))
        n = [x["dks"] for x in repack]
        ax.loglog(n, [x["seconds"] for x in repack], "-o", label="measured")
        ax.loglog(n, [repack[0]["seconds"] * k / n[0] for k in n], "k:", label="linear from the first")
        ax.set_xlabel("DKs re-wrapped")
        ax.set_ylabel("seconds")
        ax.set_title("Repack time on SQLite")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, which="both")
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "repack.png"), dpi=100)
    print(f"wrote {args.out}/results.md, results.json and plots")


if __name__ == "__main__":
    main()
