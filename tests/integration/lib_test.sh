#!/usr/bin/env bash
# The helpers of the end-to-end scripts can fail (issue 13): stop_ekmd, kill9_ekmd, absent,
# refused, expect_error, the ekm wrapper and summary (lib.sh), and ekmd_process.py's Ekmd.stop
# and ekm_problems, each against a stand-in that misbehaves as a broken build would: exit
# status 3 or SIGABRT at SIGTERM, a UBSan or ASan report in its log or report file, a hang, an
# ekm killed by a signal after printing the expected line, a grep on a missing file.
#   lib_test.sh SOURCE_DIR
set -uo pipefail
SRC=$1
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_test lib-test
EKMD_STOP_SECONDS=1  # the hang case

# A stand-in for ekmd: says it listens (https: no /healthz probe), then at SIGTERM does what
# FAKE_MODE says.
cat >"$T/fake-ekmd" <<'EOF'
#!/usr/bin/env bash
echo "ekmd listening on https://127.0.0.1:1 (a stand-in)"
on_term() {
  case ${FAKE_MODE:-ok} in
    ok) exit 0 ;;
    exit3) exit 3 ;;
    ubsan) echo "x.cc:1:2: runtime error: signed integer overflow" >&2; exit 0 ;;
    abort) trap - ABRT; kill -ABRT $$ ;;
    hang) ;;
  esac
}
trap on_term TERM
while :; do sleep 0.05; done
EOF
chmod +x "$T/fake-ekmd"
EKMD="$T/fake-ekmd"

# outcome COMMANDS: runs the helpers in COMMANDS (a string) in a subshell with fresh counters;
# prints "PASSES FAILURES".
outcome() {
  (
    passes=0 failures=0
    eval "$1" >"$T/outcome.out" 2>&1
    echo "$passes $failures"
  )
}
# gives WHAT "P F" COMMANDS: the helpers count P passes and F failures.
gives() {
  local got
  got=$(outcome "$3")
  if [ "$got" = "$2" ]; then pass; else fail "$1: counted '$got', want '$2': $(head -c 600 "$T/outcome.out")"; fi
}

# --- stop_ekmd, kill9_ekmd ------------------------------------------------------------------
gives "stop_ekmd: exit 0, clean log: a pass" "1 0" 'start_ekmd a FAKE_MODE=ok && stop_ekmd a'
gives "stop_ekmd: exit status 3 at SIGTERM: a failure" "0 1" 'start_ekmd a FAKE_MODE=exit3 && stop_ekmd a'
gives "stop_ekmd: SIGABRT at SIGTERM: a failure" "0 1" 'start_ekmd a FAKE_MODE=abort && stop_ekmd a'
gives "stop_ekmd: a UBSan report in the log: a failure" "0 1" 'start_ekmd a FAKE_MODE=ubsan && stop_ekmd a'
gives "stop_ekmd: still running after SIGTERM: a failure" "0 1" 'start_ekmd a FAKE_MODE=hang && stop_ekmd a'
gives "stop_ekmd: a sanitizer report file of its pid: a failure" "0 1" \
  'start_ekmd a && echo "ERROR: AddressSanitizer: heap-use-after-free" >"$T/sanitizer/ASAN.$EKMD_PID" && stop_ekmd a; rm -f "$T"/sanitizer/*'
gives "summary stops an ekmd left running, and fails on its exit status" "0 1" \
  'start_ekmd a FAKE_MODE=exit3 && summary'
gives "kill9_ekmd: a report in the log before the kill: a failure" "0 1" \
  'start_ekmd a && echo "==1==ERROR: AddressSanitizer: SEGV" >>"$T/a.log" && kill9_ekmd a'
gives "kill9_ekmd: a clean log: nothing counted" "0 0" 'start_ekmd a && kill9_ekmd a'
gives "start_ekmd: a process that never listens: not started" "0 0" \
  'EKMD=/bin/true; start_ekmd a || echo "did not start"'
check "…and says so" grep -q "did not start" "$T/outcome.out"

# --- negative checks need something to check --------------------------------------------------
echo "a log line" >"$T/log"
: >"$T/empty"
gives "absent: not there: a pass" "1 0" 'absent x "$T/log" -F -e secret'
gives "absent: there: a failure" "0 1" 'absent x "$T/log" -F -e "log line"'
gives "absent: a missing file: a failure" "0 1" 'absent x "$T/missing" -F -e secret'
gives "absent: an empty file: a failure" "0 1" 'absent x "$T/empty" -F -e secret'
gives "absent: grep fails (bad expression): a failure" "0 1" 'absent x "$T/log" -E -e "("'
gives "refused: the refusal named: a pass" "1 0" 'refused x "alert" -- sh -c "echo tls alert; exit 1"'
gives "refused: it succeeded: a failure" "0 1" 'refused x "alert" -- true'
gives "refused: failed for another reason: a failure" "0 1" \
  'refused x "alert" -- sh -c "echo connection refused; exit 7"'
gives "refused: crashed: a failure" "0 1" 'refused x "alert" -- sh -c "echo alert; kill -SEGV \$\$"'
gives "expect_error: one line naming it: a pass" "1 0" \
  'expect_error x "bad" -- sh -c "echo bad input >&2; exit 1"'
gives "expect_error: the line, then a crash: a failure" "0 1" \
  'expect_error x "bad" -- sh -c "echo bad input >&2; kill -SEGV \$\$"'
gives "expect_error: a sanitizer report on stderr: a failure" "0 1" \
  'expect_error x "bad" -- sh -c "echo \"bad: runtime error: load of misaligned address\" >&2; exit 1"'

# --- the ekm wrapper: a crash whatever the check around it ----------------------------------
cat >"$T/fake-ekm" <<'EOF'
#!/usr/bin/env bash
echo "acme"
[ "${1:-}" = crash ] && kill -SEGV $$
exit 0
EOF
chmod +x "$T/fake-ekm"
gives "the ekm wrapper: a crash after the right output fails the script" "1 1" '
  EKM="$T/fake-ekm"; setup_test lib-test-inner; trap - EXIT
  check "grep finds acme" grep -q acme <("$EKM" crash)
  wait $! 2>/dev/null
  _lib_reports; rm -rf "$T"'
gives "the ekm wrapper: no crash, no failure" "1 0" '
  EKM="$T/fake-ekm"; setup_test lib-test-inner; trap - EXIT
  check "grep finds acme" grep -q acme <("$EKM" fine)
  wait $! 2>/dev/null
  _lib_reports; rm -rf "$T"'
gives "a sanitizer report file of any process fails the script" "0 1" '
  echo "SUMMARY: UndefinedBehaviorSanitizer" >"$T/sanitizer/UBSAN.4242"; _lib_reports'

# --- the Python twin (tests/api/ekmd_process.py) ---------------------------------------------
check "ekmd_process.Ekmd.stop and ekm_problems fail as lib.sh does" python3 - "$SRC/tests/api" "$EKMD" "$T" <<'EOF'
import os, subprocess, sys
sys.path.insert(0, sys.argv[1])
from ekmd_process import Ekmd, ekm_problems
fake, tmp = sys.argv[2], sys.argv[3]
for mode, bad in (("ok", False), ("exit3", True), ("abort", True), ("ubsan", True),
                  ("hang", True)):
    env = dict(os.environ, FAKE_MODE=mode)
    d = Ekmd(fake, os.path.join(tmp, "d"), os.path.join(tmp, "py-%s.log" % mode), env=env)
    problems = d.stop(timeout=1)
    assert bool(problems) == bad, (mode, problems)
ok = subprocess.run(["sh", "-c", "echo fine >&2"], capture_output=True)
crashed = subprocess.run(["sh", "-c", "echo bad >&2; kill -SEGV $$"], capture_output=True)
report = subprocess.run(["sh", "-c", "echo 'x: runtime error: y' >&2; exit 1"], capture_output=True)
assert ekm_problems(ok) == [] and ekm_problems(crashed) and ekm_problems(report)
EOF
summary
