#!/usr/bin/env bash
# Runs every test: the normal build, the AddressSanitizer + UndefinedBehaviorSanitizer build,
# and the fuzz targets (corpus replay plus a short bounded run each).
#
#   bash scripts/test.sh
#
# Environment: EKM_FUZZ_SECONDS (default 6) per fuzz target; EKM_TEST_SKIP_ASAN=1 and
# EKM_TEST_SKIP_FUZZ=1 for a quicker local loop.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)
# Most end-to-end tests wait on peers (moto, ekmd, sleeps) more than they compute: run twice as
# many tests as cores. The longest ones carry a COST (tests/CMakeLists.txt), so CTest starts them
# first and the short ones fill in beside them. (Building the next tree in the background while
# tests run was tried: both are CPU-bound on 2 cores, and the suite took 58 s longer.)
TEST_JOBS=$((JOBS * 2))
FUZZ_SECONDS=${EKM_FUZZ_SECONDS:-6}
start=$(date +%s)
# The suite's builds only need line tables for stack traces, lld links the ~40 test binaries in
# a fraction of GNU ld's time, and -O1 compiles our nlohmann/json-heavy files ~25% faster than
# -O2 (test and benchmark sources at -O0: EKM_TEST_SOURCES_O0): together they keep the suite
# within its budget. The benchmarks (bench/) are built here
# too, so they keep compiling, but never run: bench/run.sh runs them in a Release tree
# (docs/benchmarks.md).
LINK=(-DCMAKE_EXE_LINKER_FLAGS=-fuse-ld=lld)
stamp() { echo "==> [$(( $(date +%s) - start ))s] $*"; }

stamp "installing dependencies"
bash scripts/install-deps.sh

stamp "grep lint"
bash scripts/grep_lint.sh

stamp "normal build"
cmake -S . -B build/test -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DEKM_TEST_SOURCES_O0=ON "${LINK[@]}" \
  >/dev/null
cmake --build build/test -j"$JOBS"
stamp "normal tests"
ctest --test-dir build/test --output-on-failure -j"$TEST_JOBS"

if [ "${EKM_TEST_SKIP_ASAN:-0}" != 1 ]; then
  stamp "sanitizer build (ASan + UBSan)"
  # Not position-independent: an ASan binary of ours carries ~2 million relative relocations,
  # and applying them took half of every `ekm` start (0.46 s -> 0.27 s), which the end-to-end
  # scripts pay hundreds of times.
  cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g1" \
    -DEKM_SANITIZE=ON -DEKM_BUILD_BENCH=OFF -DCMAKE_EXE_LINKER_FLAGS="-fuse-ld=lld -no-pie" \
    >/dev/null
  cmake --build build/asan -j"$JOBS"
  stamp "sanitizer tests"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build/asan --output-on-failure -j"$TEST_JOBS" -E '_corpus$'
fi

if [ "${EKM_TEST_SKIP_FUZZ:-0}" != 1 ]; then
  stamp "fuzz build (clang, libFuzzer)"
  CC=clang CXX=clang++ cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEKM_FUZZ=ON \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DEKM_BUILD_TESTS=OFF \
    -DEKM_BUILD_BENCH=OFF "${LINK[@]}" >/dev/null
  targets=$(sed -n 's/^ekm_add_fuzzer(\([a-z0-9_]*\) .*/\1/p' fuzz/CMakeLists.txt)
  # shellcheck disable=SC2086
  cmake --build build/fuzz -j"$JOBS" --target $targets
  stamp "fuzz corpus replay and ${FUZZ_SECONDS}s runs"
  for t in $targets; do
    mkdir -p "build/fuzz/corpus/$t"
    "build/fuzz/fuzz/$t" -runs=0 "fuzz/corpus/$t" 2>&1 | tail -1
    "build/fuzz/fuzz/$t" -max_total_time="$FUZZ_SECONDS" -print_final_stats=0 \
      "build/fuzz/corpus/$t" "fuzz/corpus/$t" 2>&1 | tail -1
  done
fi
stamp "all tests passed"
