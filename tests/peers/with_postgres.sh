#!/usr/bin/env bash
# Runs a command beside a throwaway PostgreSQL 15 cluster (Debian's postgresql-15): initdb in a
# temp dir, the server on 127.0.0.1 at a free port and a socket in that dir, trust auth for the
# `postgres` user. The command gets EKM_TEST_POSTGRES_URL (postgresql://postgres@127.0.0.1:PORT/
# postgres), EKM_TEST_POSTGRES_CTL (`stop` or `start` the server, as the right user, on the same
# port) and EKM_TEST_POSTGRES_DIR (the data dir), and its exit status is ours. The cluster is stopped and removed afterwards, whatever happened.
# Usage: tests/peers/with_postgres.sh COMMAND [ARGS...]
# initdb refuses to run as root: as root, the server runs as the `postgres` user.
set -euo pipefail
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$PGBIN/initdb" ] || { echo "with_postgres: no PostgreSQL server binaries (apt-get install postgresql-15; scripts/install-deps.sh installs it)" >&2; exit 1; }
T=$(mktemp -d /tmp/ekm-pg.XXXXXX)
AS=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres:postgres "$T"
  AS=(runuser -u postgres --)
fi
chmod 0755 "$T"
cleanup() {
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$T/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$T"
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${AS[@]}" "$PGBIN/initdb" -D "$T/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
  --no-sync >"$T/initdb.log" 2>&1 || { cat "$T/initdb.log" >&2; exit 1; }
"${AS[@]}" "$PGBIN/pg_ctl" -D "$T/data" -l "$T/server.log" -w -t 30 \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -k $T -c fsync=off -c max_connections=300" start \
  >/dev/null || { cat "$T/server.log" >&2; exit 1; }
# pg_ctl for the test, as the right user and on this cluster: `$EKM_TEST_POSTGRES_CTL stop`
# (fast shutdown) and `$EKM_TEST_POSTGRES_CTL start` (same port and settings).
{
  echo '#!/usr/bin/env bash'
  printf 'case "$1" in\n'
  printf '  stop) exec %s %q -D %q -m fast -w stop ;;\n' "${AS[*]}" "$PGBIN/pg_ctl" "$T/data"
  printf '  start) exec %s %q -D %q -l %q -w -t 30 -o %q start ;;\n' "${AS[*]}" "$PGBIN/pg_ctl" \
    "$T/data" "$T/server.log" "-c listen_addresses=127.0.0.1 -p $PORT -k $T -c fsync=off -c max_connections=300"
  printf '  *) echo "usage: $0 stop|start" >&2; exit 2 ;;\nesac\n'
} >"$T/pg_ctl"
chmod 0755 "$T/pg_ctl"
export EKM_TEST_POSTGRES_CTL="$T/pg_ctl"
export EKM_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$PORT/postgres"
export EKM_TEST_POSTGRES_DIR="$T/data"
export EKM_TEST_POSTGRES_PGBIN="$PGBIN"
set +e
"$@"
rc=$?
set -e
if [ $rc -ne 0 ] && [ -s "$T/server.log" ]; then
  echo "--- PostgreSQL server log (last 40 lines) ---" >&2
  tail -n 40 "$T/server.log" >&2
fi
exit $rc
