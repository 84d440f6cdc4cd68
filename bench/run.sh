#!/usr/bin/env bash
# Runs every benchmark of docs/benchmarks.md side by side on this machine, then turns the
# results into its tables and plots (docs/benchmarks/).
#
#   bash bench/run.sh            (about 15 minutes on 2 cores; nothing else should run)
#
# Environment: EKM_BENCH_BUILD_DIR (default build/bench), EKM_BENCH_OUT for the raw results
# (default build/bench-results), EKM_BENCH_DOCS for the tables and plots (default
# docs/benchmarks), EKM_BENCH_QUICK=1 for a short smoke run (its numbers are not for the docs),
# EKM_BENCH_REPACK_SIZES (default "10000 100000 1000000").
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${EKM_BENCH_BUILD_DIR:-build/bench}
OUT=${EKM_BENCH_OUT:-build/bench-results}
DOCS=${EKM_BENCH_DOCS:-docs/benchmarks}
QUICK=${EKM_BENCH_QUICK:-0}
REPACK_SIZES=${EKM_BENCH_REPACK_SIZES:-10000 100000 1000000}
SECONDS_PER=2 MIN_TIME=0.3 REPS=5 WRK_SECONDS=10 ENVS=10000 PROVIDER_OPS=200000
if [ "$QUICK" = 1 ]; then
  SECONDS_PER=1 MIN_TIME=0.05 REPS=1 WRK_SECONDS=2 ENVS=200 PROVIDER_OPS=20000
  REPACK_SIZES="10000"
  DOCS=${EKM_BENCH_DOCS:-$OUT/report}
fi
start=$(date +%s)
stamp() { echo "==> [$(( $(date +%s) - start ))s] $*"; }

stamp "installing dependencies (scripts/install-deps.sh --bench)"
bash scripts/install-deps.sh --bench

stamp "release build in $BUILD"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DEKM_BUILD_TESTS=OFF -DEKM_BUILD_BENCH=ON \
  -DCMAKE_EXE_LINKER_FLAGS=-fuse-ld=lld >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target ekmd ekm_cli ekm_library_bench ekm_key_cache_bench \
  ekm_repack_bench ekm_provider_calls_bench
mkdir -p "$OUT"
{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo +changes)"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
  echo "openssl: $(openssl version)"
  echo "kernel: $(uname -r)"
} >"$OUT/machine.txt"

# The baseline runs right before and right after the library benchmarks, and the report takes
# the median of both rounds: a neighbour's load drifting during the run hits both sides.
openssl_round() {
  for size in 64 1024 16384 1048576; do
    for multi in 1 2; do
      line=$(openssl speed -mr -multi "$multi" -seconds "$SECONDS_PER" -bytes "$size" \
               -evp aes-256-gcm 2>/dev/null | grep '^+F:' | tail -1)
      echo "$size $multi ${line##*:}" >>"$OUT/openssl.txt"
    done
  done
}
: >"$OUT/openssl.txt"
stamp "openssl speed -evp aes-256-gcm (the baseline), 1 and 2 processes"
openssl_round

stamp "library: crypto, envelope and service layers (Google Benchmark)"
# Repetitions interleaved at random across all the benchmarks, so a slow minute of the machine
# falls on every configuration alike; the report takes medians.
"$BUILD/bench/ekm_library_bench" --benchmark_min_time="$MIN_TIME" \
  --benchmark_repetitions="$REPS" --benchmark_enable_random_interleaving=true \
  --benchmark_report_aggregates_only=true \
  --benchmark_out="$OUT/library.json" --benchmark_out_format=json

stamp "openssl speed again (the baseline's second round)"
openssl_round
cat "$OUT/openssl.txt"

stamp "key cache hits"
"$BUILD/bench/ekm_key_cache_bench" --benchmark_min_time="$MIN_TIME" \
  --benchmark_out="$OUT/key_cache.json" --benchmark_out_format=json \
  --benchmark_report_aggregates_only=true

stamp "provider calls per million operations, against moto"
"$BUILD/bench/ekm_provider_calls_bench" "$PROVIDER_OPS" | tee "$OUT/provider_calls.jsonl"

stamp "repack on SQLite: $REPACK_SIZES DKs"
# shellcheck disable=SC2086
"$BUILD/bench/ekm_repack_bench" $REPACK_SIZES | tee "$OUT/repack.jsonl"

stamp "ekmd under wrk, beside nginx; cold start and memory"
/usr/bin/python3 bench/load.py --build-dir "$BUILD" --out "$OUT/load.json" \
  --duration "$WRK_SECONDS" --environments "$ENVS"

stamp "repack on PostgreSQL (a throwaway local cluster): $REPACK_SIZES DKs"
# shellcheck disable=SC2086
bash tests/peers/with_postgres.sh "$BUILD/bench/ekm_repack_bench" $REPACK_SIZES \
  | tee "$OUT/repack_postgres.jsonl"

stamp "replicas: PostgreSQL beside SQLite, one replica beside two, cache misses, a slow tenant"
CLUSTER_ARGS=(--duration "$WRK_SECONDS")
[ "$QUICK" = 1 ] && CLUSTER_ARGS+=(--rounds 1 --miss-environments 20)
bash tests/peers/with_postgres.sh /usr/bin/python3 bench/cluster.py --build-dir "$BUILD" \
  --out "$OUT/cluster.json" "${CLUSTER_ARGS[@]}"

stamp "the CLI: ekm encrypt and decrypt of a 256 MiB file, beside openssl speed"
CLI_ROUNDS=7
[ "$QUICK" = 1 ] && CLI_ROUNDS=1
bash bench/cli_throughput.sh "$BUILD/ekm" 256 "$CLI_ROUNDS" | tee "$OUT/cli_throughput.md"

stamp "report"
DOC_ARGS=()
[ "$QUICK" = 1 ] || DOC_ARGS=(--doc docs/benchmarks.md)
/usr/bin/python3 bench/report.py --results "$OUT" --out "$DOCS" "${DOC_ARGS[@]}"
stamp "done: raw results in $OUT, tables and plots in $DOCS"
