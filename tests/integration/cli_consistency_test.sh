#!/usr/bin/env bash
# End-to-end, the ekm CLI in local mode (issue 12): every subcommand takes --json after it as
# well as before it (the README writes `ekm events … --json`), `ekm token create` takes -w/-r/-e
# like every other command, and `ekm key policy --example` and the policy doctor name the same
# placeholder account.
#   cli_consistency_test.sh EKM_BINARY
set -uo pipefail
EKM=$1
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_test cli-consistency-test

D="$T/data"
L() { "$EKM" --data-dir "$D" "$@"; }
L init >/dev/null 2>&1 || fail "init"
L workspace create acme >/dev/null || fail "workspace create"
L environment create acme prod >/dev/null || fail "environment create"
echo hello | L encrypt -w acme -e prod >/dev/null || fail "encrypt"

# Every subcommand, at every level, lists --json in its help.
subcommands() {  # PATH...: the subcommands of `ekm PATH`
  "$EKM" "$@" --help | sed -n '/^Subcommands:/,$p' | sed -n 's/^  \([a-z][a-z-]*\).*/\1/p'
}
walk() {
  local sub
  for sub in $(subcommands "$@"); do
    check "ekm $* $sub --help lists --json" grep -q -- "--json" <("$EKM" "$@" "$sub" --help)
    walk "$@" "$sub"
  done
}
walk
check "the walk found the leaves" grep -q -- "--json" <("$EKM" audit verify --help)

# --json after the subcommand answers what it answers before it.
same_both_ways() {  # ARGS...: `ekm --json ARGS` and `ekm ARGS --json` print the same JSON
  L --json "$@" >"$T/before" 2>"$T/err1" || { fail "ekm --json $*: $(cat "$T/err1")"; return; }
  L "$@" --json >"$T/after" 2>"$T/err2" || { fail "ekm $* --json: $(cat "$T/err2")"; return; }
  check "ekm $* --json is JSON" python3 -c '
import json, sys
text = open(sys.argv[1]).read()
try:
    json.loads(text)
except ValueError:
    [json.loads(line) for line in text.splitlines() if line]' "$T/after"
  check "ekm $* --json = ekm --json $*" cmp -s "$T/before" "$T/after"
}
same_both_ways workspace list
same_both_ways environment list acme
same_both_ways environment show -w acme -e prod
same_both_ways key show -w acme -e prod
same_both_ways repack status -w acme -e prod
same_both_ways events -w acme -e prod --since 24h
same_both_ways audit list -w acme -t environment.created
# The README's example as written, with the --json its comment offers.
check "README: ekm events -w acme -e prod --since 24h --json" python3 -c '
import json, sys
lines = [json.loads(l) for l in sys.stdin if l.strip()]
assert lines and all(l["workspace"] == "acme" for l in lines), lines' \
  < <(L events -w acme -e prod --since 24h --json)

# token create and list take -w/-r/-e like every other command.
TOKEN=$(L token create -w acme -r app -e prod 2>/dev/null)
check "ekm token create -w acme -r app -e prod" grep -Eq '^ekm_[0-9a-f]{16}_' <<<"$TOKEN"
check "ekm token list -w acme" grep -q "$(cut -d_ -f2 <<<"$TOKEN")" <(L token list -w acme)
check "ekm token list -w acme --json" grep -q '"role": "app"' <(L token list -w acme --json)
check "ekm data-key generate -s" grep -q '^ekm1:' <(L data-key generate -w acme -e prod -s blobs)

# One placeholder account: the example policy and the doctor's corrected policy for text it
# cannot repair are the same policy.
P=(--aws-principal-arn arn:aws:iam::444455556666:role/ekm-platform)
L "${P[@]}" key policy -w acme -e prod --example >"$T/example.json" 2>"$T/example.err" ||
  fail "key policy --example: $(cat "$T/example.err")"
check "key policy --example names arn:aws:iam::111122223333:root" \
  grep -q '"arn:aws:iam::111122223333:root"' "$T/example.json"
check "…and tells to replace 111122223333" grep -q "Replace 111122223333" "$T/example.err"
echo "this is not a key policy" | L "${P[@]}" --json policy check - -w acme >"$T/doctor.json"
check "the doctor's corrected policy is the same example" python3 -c '
import json, sys
doctor = json.load(open(sys.argv[1]))
assert doctor["corrected_is_example"], doctor
assert json.loads(doctor["corrected_policy"]) == json.load(open(sys.argv[2])), doctor
assert "YOUR-ACCOUNT-ID" not in json.dumps(doctor), doctor' "$T/doctor.json" "$T/example.json"
summary
