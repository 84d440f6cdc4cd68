#!/usr/bin/env bash
# Runs every test: the Release build a user makes, the AddressSanitizer + UndefinedBehaviorSanitizer build,
# a ThreadSanitizer build of the concurrency tests,
# and the fuzz targets (corpus replay plus a short bounded run each).
#
#   bash scripts/test.sh
#
# Environment: EKM_FUZZ_SECONDS (default 6) per fuzz target; EKM_TEST_SKIP_ASAN=1,
# EKM_TEST_SKIP_TSAN=1 and EKM_TEST_SKIP_FUZZ=1 for a quicker local loop.
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
# lld links the ~40 test binaries in a fraction of GNU ld's time.
LINK=(-DCMAKE_EXE_LINKER_FLAGS=-fuse-ld=lld)

# Each stage's time, printed at the end whether the suite passes or fails (the failed stage is
# named), so a slow or broken stage stands out in the CI log.
stages=()
stage_name=""
stage_start=$start
stage() {
  local now
  now=$(date +%s)
  [ -n "$stage_name" ] && stages+=("$(printf '%6ss  %s' $((now - stage_start)) "$stage_name")")
  stage_name=$1
  stage_start=$now
  echo "==> [$((now - start))s] $1"
}
summary() {
  local rc=$? now
  now=$(date +%s)
  [ -n "$stage_name" ] && stages+=("$(printf '%6ss  %s' $((now - stage_start)) "$stage_name")")
  echo
  echo "==> stage times"
  printf '%s\n' "${stages[@]}"
  printf '%6ss  total\n' $((now - start))
  if [ "$rc" -eq 0 ]; then
    echo "==> all tests passed"
  else
    echo "==> FAILED in stage: $stage_name (exit $rc)"
  fi
}
trap summary EXIT

stage "installing dependencies"
bash scripts/install-deps.sh

stage "grep lint"
bash scripts/grep_lint.sh

# The normal tree is the optimised build a user makes (`cmake -DCMAKE_BUILD_TYPE=Release`, tests
# and benchmarks on): GCC warns about some things only when it optimises (-Wrestrict,
# -Wstringop-overflow, -Wmaybe-uninitialized), and -Werror makes those build failures, so the
# suite must compile what users compile. The benchmarks (bench/) are built here too, so they
# keep compiling, but never run: bench/run.sh runs them (docs/benchmarks.md).
stage "release build"
cmake -S . -B build/test -DCMAKE_BUILD_TYPE=Release "${LINK[@]}" >/dev/null
cmake --build build/test -j"$JOBS"
stage "release tests"
ctest --test-dir build/test --output-on-failure -j"$TEST_JOBS"

if [ "${EKM_TEST_SKIP_ASAN:-0}" != 1 ]; then
  stage "sanitizer build (ASan + UBSan)"
  # Not position-independent: an ASan binary of ours carries ~2 million relative relocations,
  # and applying them took half of every `ekm` start (0.46 s -> 0.27 s), which the end-to-end
  # scripts pay hundreds of times.
  cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g1" \
    -DEKM_SANITIZE=ON -DEKM_BUILD_BENCH=OFF -DCMAKE_EXE_LINKER_FLAGS="-fuse-ld=lld -no-pie" \
    >/dev/null
  cmake --build build/asan -j"$JOBS"
  stage "sanitizer tests"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build/asan --output-on-failure -j"$TEST_JOBS" -E '_corpus$'
fi

if [ "${EKM_TEST_SKIP_TSAN:-0}" != 1 ]; then
  stage "thread sanitizer build (the concurrency tests)"
  # Only the library and the tests with threads of their own (EKM_TSAN_TESTS in CMakeLists.txt,
  # label tsan), at -O1 with assertions on: TSan's report is what they are run for.
  cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
    -DEKM_TSAN=ON -DEKM_BUILD_BENCH=OFF "${LINK[@]}" >/dev/null
  cmake --build build/tsan -j"$JOBS" --target ekm_tsan_tests
  stage "thread sanitizer tests"
  # halt_on_error: the first data race or lock-order inversion fails the test, its report in
  # the log (--output-on-failure).
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:exitcode=66 \
    ctest --test-dir build/tsan --output-on-failure -j"$JOBS" -L tsan
fi

if [ "${EKM_TEST_SKIP_FUZZ:-0}" != 1 ]; then
  stage "fuzz build (clang, libFuzzer)"
  CC=clang CXX=clang++ cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEKM_FUZZ=ON \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DEKM_BUILD_TESTS=OFF \
    -DEKM_BUILD_BENCH=OFF "${LINK[@]}" >/dev/null
  targets=$(sed -n 's/^ekm_add_fuzzer(\([a-z0-9_]*\) .*/\1/p' fuzz/CMakeLists.txt)
  # shellcheck disable=SC2086
  cmake --build build/fuzz -j"$JOBS" --target $targets
  stage "fuzz corpus replay and ${FUZZ_SECONDS}s runs"
  # Every run's whole libFuzzer output goes to build/fuzz/logs/<target>.{replay,run}.log; one
  # summary line per target is printed, and a failing run (crash, sanitizer report, leak, timeout)
  # prints its whole log and fails the stage; the failing input is saved beside the log
  # (build/fuzz/logs/<target>.crash-*). UB aborts (-fno-sanitize-recover=all in the build).
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:allocator_may_return_null=1
  rm -rf build/fuzz/logs
  mkdir -p build/fuzz/logs
  fuzz_run() { # target kind args...: runs one libFuzzer invocation, logging; fails on failure
    local t=$1 kind=$2 log="build/fuzz/logs/$1.$2.log"
    shift 2
    if ! "build/fuzz/fuzz/$t" -artifact_prefix="build/fuzz/logs/$t." "$@" >"$log" 2>&1; then
      echo "FUZZ FAILURE: $t ($kind), whole log $log:"
      cat "$log"
      return 1
    fi
  }
  fuzz_target() { # target: replay, bounded run, summary line; output to its .out file
    local t=$1 log="build/fuzz/logs/$1.run.log"
    mkdir -p "build/fuzz/corpus/$t"
    fuzz_run "$t" replay -runs=0 "fuzz/corpus/$t" || return 1
    fuzz_run "$t" run -max_total_time="$FUZZ_SECONDS" -timeout=30 -rss_limit_mb=2048 \
      -print_final_stats=1 "build/fuzz/corpus/$t" "fuzz/corpus/$t" || return 1
    printf '  %-28s seeds %4s  %10s execs  cov %5s  ft %6s  corpus %s\n' "$t" \
      "$(find "fuzz/corpus/$t" -type f | wc -l)" \
      "$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")" \
      "$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)" \
      "$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)" \
      "$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -1 | cut -d' ' -f2)"
  }
  # $JOBS targets at a time (each libFuzzer run is one process on one core).
  fuzz_failed=0
  # shellcheck disable=SC2086
  set -- $targets
  while [ $# -gt 0 ]; do
    batch=()
    while [ $# -gt 0 ] && [ ${#batch[@]} -lt "$JOBS" ]; do
      batch+=("$1")
      shift
    done
    pids=()
    for t in "${batch[@]}"; do
      fuzz_target "$t" >"build/fuzz/logs/$t.out" 2>&1 &
      pids+=($!)
    done
    for i in "${!batch[@]}"; do
      wait "${pids[$i]}" || fuzz_failed=1
      cat "build/fuzz/logs/${batch[$i]}.out"
    done
  done
  [ "$fuzz_failed" = 0 ]
fi
