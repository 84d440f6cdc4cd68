#!/usr/bin/env bash
# Two ekmd replicas on one local PostgreSQL, to try the multi-node setup on one machine
# (docs/operations.md "Running several replicas"):
#
#   bash scripts/cluster-demo.sh
#
# Installs the dependencies, builds ekm and ekmd, starts a throwaway PostgreSQL 15 cluster in a
# temporary directory (127.0.0.1 only), initializes the store (`ekm --store URL --root-key-file
# F init`), starts two replicas on 127.0.0.1:8081 and :8082, encrypts through one and decrypts
# through the other, then waits: Ctrl-C stops the replicas and removes the cluster and its data.
# Environment: EKM_BUILD_DIR (default build/quickstart), EKM_DEMO_PORTS (default "8081 8082").
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${EKM_BUILD_DIR:-build/quickstart}
read -r -a PORTS <<<"${EKM_DEMO_PORTS:-8081 8082}"

echo "==> installing dependencies (Debian packages)"
bash scripts/install-deps.sh
echo "==> building ekm and ekmd"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DEKM_BUILD_TESTS=OFF -DEKM_BUILD_BENCH=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target ekm_cli ekmd
EKM=$(realpath "$BUILD/ekm")
EKMD=$(realpath "$BUILD/ekmd")

# Everything below runs beside the cluster; tests/peers/with_postgres.sh removes it at the end.
exec bash tests/peers/with_postgres.sh bash -c '
set -euo pipefail
EKM=$1; EKMD=$2; shift 2; PORTS=("$@")
U=$EKM_TEST_POSTGRES_URL
D=$(mktemp -d /tmp/ekm-cluster-demo.XXXXXX)
PIDS=()
trap "kill \${PIDS[*]} 2>/dev/null; wait; rm -rf $D" EXIT
echo "==> PostgreSQL at $U"
echo "==> initializing the store"
"$EKM" --store "$U" --root-key-file "$D/root.key" init | tee "$D/init.out"
ADMIN=$(sed -n "s/^admin token: //p" "$D/init.out")
for i in "${!PORTS[@]}"; do
  "$EKMD" --store "$U" --root-key-file "$D/root.key" --data-dir "$D/node$i" \
    --listen "127.0.0.1:${PORTS[$i]}" >"$D/node$i.log" 2>&1 &
  PIDS+=($!)
done
for p in "${PORTS[@]}"; do
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$p/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "http://127.0.0.1:$p/readyz" >/dev/null || { echo "a replica did not start:"; cat "$D"/node*.log; exit 1; }
  echo "==> replica up: http://127.0.0.1:$p"
done
A="http://127.0.0.1:${PORTS[0]}"; B="http://127.0.0.1:${PORTS[1]}"
EKM_TOKEN=$ADMIN "$EKM" --server "$A" workspace create demo >/dev/null
OWNER=$(EKM_TOKEN=$ADMIN "$EKM" --server "$A" token create --role owner --workspace demo)
EKM_TOKEN=$OWNER "$EKM" --server "$B" environment create demo prod
APP=$(EKM_TOKEN=$OWNER "$EKM" --server "$A" token create --role app --workspace demo)
echo "hello from the cluster demo" | EKM_TOKEN=$APP "$EKM" --server "$A" encrypt -w demo -e prod -t >"$D/ct"
echo "==> encrypted through $A: $(cut -c1-40 "$D/ct")…"
echo "==> decrypted through $B: $(EKM_TOKEN=$APP "$EKM" --server "$B" decrypt -w demo -e prod <"$D/ct")"
echo
echo "Two replicas share the store. Try, in another shell:"
echo "  export EKM_TOKEN=$APP"
echo "  echo secret | $EKM --server $A encrypt -w demo -e prod -t | $EKM --server $B decrypt -w demo -e prod"
echo "Admin token: $ADMIN   (logs in $D)"
echo "Ctrl-C stops both replicas and removes the cluster."
wait
' demo "$EKM" "$EKMD" "${PORTS[@]}"
