#!/usr/bin/env bash
# The soak's positive control: with revocations armed on the wrong key (--control) the soak must
# exit 1 and name the requests that succeeded after the revocation. Anything else (exit 0, a
# crash, another failure) fails this test.
set -uo pipefail
out=$(bash "$(dirname "$0")/run.sh" --minutes 0.1 --control 2>&1)
rc=$?
echo "$out"
if [ "$rc" -eq 1 ] && grep -q "after its CMK was revoked" <<<"$out" &&
   ! grep -q "did not start\|Traceback" <<<"$out"; then
  echo "PASS: the soak reported the revocation that never took effect"
  exit 0
fi
echo "FAIL: the soak did not report the control's violation (exit $rc)"
exit 1
