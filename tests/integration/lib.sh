# Shared by the end-to-end scripts: pass/fail counters and checks. Source it after setting T
# (the script's temp dir); finish with `summary`.
failures=0
passes=0
pass() { passes=$((passes + 1)); }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() { local what=$1; shift; if "$@"; then pass; else fail "$what"; fi; }
# expect_error WHAT SUBSTRING -- command...: non-zero exit, one line on stderr naming SUBSTRING
expect_error() {
  local what=$1 want=$2; shift 3
  "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [ $rc -eq 0 ]; then fail "$what: exit 0"; return; fi
  if [ "$(wc -l <"$T/err")" -ne 1 ]; then fail "$what: stderr is not one line: $(cat "$T/err")"; return; fi
  if ! grep -qF -- "$want" "$T/err"; then fail "$what: stderr lacks '$want': $(cat "$T/err")"; return; fi
  pass
}
# The closing line CI reads, and the exit status.
summary() {
  echo "$passes passed, $failures failed"
  [ "$failures" -eq 0 ]
}
