#!/usr/bin/env bash
# The soak harness (tests/soak/soak.py: what it does and checks): multi-tenant load through ekmd
# while KMS faults, revocations, rotations, replacements and kill -9 restarts happen.
#
#   bash tests/soak/run.sh --minutes N [--tenants K] [--seed S] [--keep]
#
# Binaries from EKM_BUILD_DIR (default build/test); the suite runs one minute of it
# (ctest -R soak). Exits non-zero on any violation, with the summary table.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${EKM_BUILD_DIR:-$SRC/build/test}
PY=${EKM_PYTHON3:-$(command -v python3)}
if ! "$PY" -c 'import moto, boto3' 2>/dev/null; then
  echo "soak: no python3 with moto and boto3 (set EKM_PYTHON3)" >&2
  exit 2
fi
for b in ekm ekmd; do
  [ -x "$BUILD/$b" ] || { echo "soak: $BUILD/$b not built (set EKM_BUILD_DIR)" >&2; exit 2; }
done
export AWS_EC2_METADATA_DISABLED=true
exec "$PY" "$SRC/tests/soak/soak.py" --ekm "$BUILD/ekm" --ekmd "$BUILD/ekmd" --src "$SRC" "$@"
