#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a running ekm on its embedded default
# (SQLite store + platform-managed root key), with an encrypt/decrypt round trip.
#
#   bash scripts/quickstart.sh
#
# Environment: EKM_DATA_DIR (default ./ekm-data), EKM_PORT (default 8080), EKM_BUILD_DIR
# (default build/quickstart).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${EKM_DATA_DIR:-./ekm-data}
PORT=${EKM_PORT:-8080}
BUILD=${EKM_BUILD_DIR:-build/quickstart}

echo "==> installing dependencies (Debian packages)"
bash scripts/install-deps.sh

echo "==> building ekm and ekmd"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DEKM_BUILD_TESTS=OFF -DEKM_BUILD_BENCH=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target ekm_cli ekmd

EKM="$BUILD/ekm"
mkdir -p -m 700 "$DATA_DIR"  # ekmd creates its store and keys here on first start

# Replace an ekmd that an earlier run of this script started.
if [ -f "$DATA_DIR/ekmd.pid" ] && kill -0 "$(cat "$DATA_DIR/ekmd.pid")" 2>/dev/null; then
  echo "==> stopping the ekmd started earlier (pid $(cat "$DATA_DIR/ekmd.pid"))"
  kill "$(cat "$DATA_DIR/ekmd.pid")"
  for _ in $(seq 50); do kill -0 "$(cat "$DATA_DIR/ekmd.pid")" 2>/dev/null || break; sleep 0.1; done
fi

echo "==> starting ekmd on 127.0.0.1:$PORT"
nohup "$BUILD/ekmd" --data-dir "$DATA_DIR" --listen "127.0.0.1:$PORT" >"$DATA_DIR/ekmd.log" 2>&1 &
echo $! >"$DATA_DIR/ekmd.pid"
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  if ! kill -0 "$(cat "$DATA_DIR/ekmd.pid")" 2>/dev/null; then
    echo "ekmd failed to start:" >&2; cat "$DATA_DIR/ekmd.log" >&2; exit 1
  fi
  sleep 0.1
done

export EKM_SERVER="http://127.0.0.1:$PORT"
# ekmd initialized the data directory on its first start and wrote the bootstrap admin token
# (docs/api.md "Authentication and roles"); the admin makes the workspace and an owner, the
# owner an app token.
for _ in $(seq 50); do [ -s "$DATA_DIR/bootstrap-admin-token" ] && break; sleep 0.1; done
if [ ! -s "$DATA_DIR/bootstrap-admin-token" ]; then
  echo "error: $DATA_DIR/bootstrap-admin-token is missing: this data directory already had an" \
       "admin token (from \`ekm init\` or an earlier run whose file was deleted)." >&2
  echo "Use that token (EKM_TOKEN=… ekm --server $EKM_SERVER …), or run with a new" \
       "EKM_DATA_DIR." >&2
  exit 1
fi
ADMIN_TOKEN=$(head -n1 "$DATA_DIR/bootstrap-admin-token")
echo "==> creating workspace demo and environment demo/prod"
EKM_TOKEN=$ADMIN_TOKEN "$EKM" workspace create demo 2>/dev/null || true
EKM_TOKEN=$ADMIN_TOKEN "$EKM" environment create demo prod 2>/dev/null || true
EKM_TOKEN=$ADMIN_TOKEN "$EKM" environment list demo
# The admin creates a workspace's owner only while it has none (docs/api.md "Who creates
# tokens"): keep it for the next run of this script.
OWNER_FILE="$DATA_DIR/quickstart-owner-token"
if [ ! -s "$OWNER_FILE" ]; then
  if ! OWNER_TOKEN=$(EKM_TOKEN=$ADMIN_TOKEN "$EKM" token create --workspace demo --role owner \
                       --description quickstart); then
    echo "error: could not create an owner token for workspace demo (above); use the owner" \
         "token you created before, or run with a new EKM_DATA_DIR." >&2
    exit 1
  fi
  (umask 077 && printf '%s\n' "$OWNER_TOKEN" >"$OWNER_FILE")
fi
OWNER_TOKEN=$(head -n1 "$OWNER_FILE")
export EKM_TOKEN
EKM_TOKEN=$(EKM_TOKEN=$OWNER_TOKEN "$EKM" token create --workspace demo --role app --description quickstart)

echo "==> round trip"
CIPHERTEXT=$(echo "hello, ekm" | "$EKM" encrypt --workspace demo --environment prod --text)
echo "ciphertext: $CIPHERTEXT"
echo -n "plaintext:  "
echo "$CIPHERTEXT" | "$EKM" decrypt --workspace demo --environment prod

cat <<TXT

ekmd is running at http://127.0.0.1:$PORT (pid $(cat "$DATA_DIR/ekmd.pid"), log $DATA_DIR/ekmd.log).
Try:   export EKM_SERVER=http://127.0.0.1:$PORT PATH=$(cd "$BUILD" && pwd):\$PATH
       export EKM_TOKEN=\$(head -n1 $DATA_DIR/bootstrap-admin-token)   # the admin token
       # (the workspace demo's owner token is in $DATA_DIR/quickstart-owner-token)
       ekm --help
Stop:  kill \$(cat $DATA_DIR/ekmd.pid)
TXT
