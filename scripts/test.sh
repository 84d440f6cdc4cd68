#!/usr/bin/env bash
# Runs every test: the normal build, the AddressSanitizer + UndefinedBehaviorSanitizer build,
# and the fuzz targets (corpus replay plus a short bounded run each).
#
#   bash scripts/test.sh
#
# Environment: EKM_FUZZ_SECONDS (default 10) per fuzz target; EKM_TEST_SKIP_ASAN=1 and
# EKM_TEST_SKIP_FUZZ=1 for a quicker local loop.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)
# Most end-to-end tests wait on peers (moto, ekmd, sleeps) more than they compute: run twice as
# many tests as cores.
TEST_JOBS=$((JOBS * 2))
FUZZ_SECONDS=${EKM_FUZZ_SECONDS:-10}
start=$(date +%s)
# The suite's builds only need line tables for stack traces, lld links the ~40 test binaries in
# a fraction of GNU ld's time, and -O1 compiles our nlohmann/json-heavy files ~25% faster than
# -O2: together they keep the suite within its budget. The benchmarks (bench/) are built here
# too, so they keep compiling, but never run: bench/run.sh runs them in a Release tree
# (docs/benchmarks.md).
LINK=(-DCMAKE_EXE_LINKER_FLAGS=-fuse-ld=lld)
stamp() { echo "==> [$(( $(date +%s) - start ))s] $*"; }

stamp "installing dependencies"
bash scripts/install-deps.sh

stamp "grep lint"
bash scripts/grep_lint.sh

# The test runs mostly wait on peers (moto, ekmd, sleeps) while the builds keep the CPU busy:
# each next build runs in the background, at lower priority, while the tests before it run.
# A failed background build fails the suite (its log is printed).
asan_build() {
  # Not position-independent: an ASan binary of ours carries ~2 million relative relocations,
  # and applying them took half of every `ekm` start (0.46 s -> 0.27 s), which the end-to-end
  # scripts pay hundreds of times.
  cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g1" \
    -DEKM_SANITIZE=ON -DEKM_BUILD_BENCH=OFF -DCMAKE_EXE_LINKER_FLAGS="-fuse-ld=lld -no-pie" \
    >/dev/null
  nice -n 10 cmake --build build/asan -j"$JOBS"
}
fuzz_targets() { sed -n 's/^ekm_add_fuzzer(\([a-z0-9_]*\) .*/\1/p' fuzz/CMakeLists.txt; }
fuzz_build() {
  CC=clang CXX=clang++ cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEKM_FUZZ=ON \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DEKM_BUILD_TESTS=OFF \
    -DEKM_BUILD_BENCH=OFF "${LINK[@]}" >/dev/null
  # shellcheck disable=SC2046
  nice -n 10 cmake --build build/fuzz -j"$JOBS" --target $(fuzz_targets)
}
BG_PID="" BG_LOG=""
background() {  # background NAME FUNCTION
  BG_LOG="build/$1-build.log"
  mkdir -p build
  stamp "$1 build starts in the background (log: $BG_LOG)"
  "$2" >"$BG_LOG" 2>&1 &
  BG_PID=$!
}
wait_background() {
  if [ -n "$BG_PID" ]; then
    if ! wait "$BG_PID"; then
      cat "$BG_LOG" >&2
      echo "error: the background build failed (above; also in $BG_LOG)" >&2
      exit 1
    fi
    stamp "background build done"
    BG_PID=""
  fi
}
trap '[ -n "$BG_PID" ] && kill "$BG_PID" 2>/dev/null; true' EXIT

stamp "normal build"
cmake -S . -B build/test -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" "${LINK[@]}" >/dev/null
cmake --build build/test -j"$JOBS"
if [ "${EKM_TEST_SKIP_ASAN:-0}" != 1 ]; then
  background "sanitizer (ASan + UBSan)" asan_build
elif [ "${EKM_TEST_SKIP_FUZZ:-0}" != 1 ]; then
  background "fuzz (clang, libFuzzer)" fuzz_build
fi
stamp "normal tests"
ctest --test-dir build/test --output-on-failure -j"$TEST_JOBS"
wait_background

if [ "${EKM_TEST_SKIP_ASAN:-0}" != 1 ]; then
  [ "${EKM_TEST_SKIP_FUZZ:-0}" != 1 ] && background "fuzz (clang, libFuzzer)" fuzz_build
  stamp "sanitizer tests"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build/asan --output-on-failure -j"$TEST_JOBS" -E '_corpus$'
  wait_background
fi

if [ "${EKM_TEST_SKIP_FUZZ:-0}" != 1 ]; then
  stamp "fuzz corpus replay and ${FUZZ_SECONDS}s runs"
  for t in $(fuzz_targets); do
    mkdir -p "build/fuzz/corpus/$t"
    "build/fuzz/fuzz/$t" -runs=0 "fuzz/corpus/$t" 2>&1 | tail -1
    "build/fuzz/fuzz/$t" -max_total_time="$FUZZ_SECONDS" -print_final_stats=0 \
      "build/fuzz/corpus/$t" "fuzz/corpus/$t" 2>&1 | tail -1
  done
fi
stamp "all tests passed"
