#!/usr/bin/env bash
# Several ekmd replicas on one PostgreSQL store (run beside a throwaway cluster:
# tests/peers/with_postgres.sh gives EKM_TEST_POSTGRES_URL):
#   - a replica on an empty database without its root key file refuses; `ekm --store URL
#     --root-key-file F init` initializes the store and prints the admin token;
#   - three replicas started at once come up on the one schema; one given another root key
#     refuses, naming the root key;
#   - data encrypted through any replica decrypts through every other (single and stream);
#   - concurrent encrypts of one scope through all three: no (DK version, nonce) pair twice;
#   - a shred whose two steps reach different replicas; a token revoked on one is refused by
#     the others within the token cache TTL (5 s); the audit log verifies.
#   postgres_replicas_test.sh EKM_BINARY EKMD_BINARY
set -uo pipefail
EKM=$1
EKMD=$2
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_test postgres-replicas-test
U=${EKM_TEST_POSTGRES_URL:?run through tests/peers/with_postgres.sh}
R="$T/root.key"
as() { local v=$1; shift; EKM_TOKEN="${!v:-}" "$@"; }

start_ekmd nokey --data-dir "$T/d0" --store "$U" --root-key-file "$R" >/dev/null 2>&1
check "a replica without its root key file does not start" test -z "${EKMD_PIDS[nokey]:-}"
check "…and says how to initialize the store" grep -q "ekm --store URL --root-key-file $R init" "$T/nokey.log"

"$EKM" --store "$U" --root-key-file "$R" init >"$T/init.out" 2>"$T/init.err"
check "ekm --store URL --root-key-file F init initializes the store" grep -q "initialized ekm store" "$T/init.out"
ADMIN_TOKEN=$(sed -n 's/^admin token: //p' "$T/init.out")
check "…and prints the bootstrap admin token" test -n "$ADMIN_TOKEN"
check "…and writes the root key file 0600" test "$(stat -c %a "$R")" = 600

# Three replicas at once.
for n in 1 2 3; do
  "$EKMD" --data-dir "$T/d$n" --store "$U" --root-key-file "$R" --listen 127.0.0.1:0 \
    --key-cache-ttl 2 >"$T/r$n.log" 2>&1 &
  EKMD_PIDS[r$n]=$!
done
declare -A URL=()
for n in 1 2 3; do
  for i in $(seq 200); do
    p=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$T/r$n.log" | head -1)
    [ -n "$p" ] && curl -fsS "http://127.0.0.1:$p/healthz" >/dev/null 2>&1 && break
    sleep 0.05
  done
  URL[$n]="http://127.0.0.1:$p"
  check "replica $n started at once with the others is up" curl -fsS "${URL[$n]}/readyz" -o /dev/null
done
EKMD_NAME=r1

head -c 32 /dev/urandom | xxd -p -c 64 >"$T/other.key"; chmod 600 "$T/other.key"
start_ekmd foreign --data-dir "$T/d4" --store "$U" --root-key-file "$T/other.key" >/dev/null 2>&1
check "a replica with a foreign root key does not start" test -z "${EKMD_PIDS[foreign]:-}"
check "…and says it is not the store's root key" grep -q "is not the root key of this store" "$T/foreign.log"

setup_tokens "$T/d1" "${URL[1]}" acme || fail "tokens"
as OWNER_TOKEN "$EKM" --server "${URL[2]}" environment create acme prod >/dev/null
check "an environment created through replica 2 is seen by replica 3" \
  as OWNER_TOKEN "$EKM" --server "${URL[3]}" environment show -w acme -e prod
for a in 1 2 3; do
  b=$(( a % 3 + 1 ))
  echo "secret via $a" | as APP_TOKEN "$EKM" --server "${URL[$a]}" encrypt -w acme -e prod -s s1 >"$T/ct$a" 2>"$T/ct$a.err"
  as APP_TOKEN "$EKM" --server "${URL[$b]}" decrypt -w acme -e prod <"$T/ct$a" >"$T/pt$a" 2>"$T/pt$a.err"
  check "encrypted through replica $a, decrypted through replica $b" grep -qx "secret via $a" "$T/pt$a"
done
head -c 300000 /dev/urandom >"$T/big"
as APP_TOKEN "$EKM" --server "${URL[1]}" encrypt -w acme -e prod -s s1 <"$T/big" >"$T/big.ct" 2>/dev/null
as APP_TOKEN "$EKM" --server "${URL[3]}" decrypt -w acme -e prod <"$T/big.ct" >"$T/big.pt" 2>/dev/null
check "a stream encrypted through replica 1 decrypts through replica 3" cmp -s "$T/big" "$T/big.pt"

# Concurrent encrypts of one scope through all three replicas: every (DK version, nonce) once.
for n in 1 2 3; do
  python3 - "${URL[$n]}" "$APP_TOKEN" >"$T/nonces$n" <<'PY' &
import base64, json, sys, urllib.request
url, token = sys.argv[1], sys.argv[2]
for _ in range(20):
    body = json.dumps({"items": [{"plaintext": base64.b64encode(b"x").decode(),
                                  "scope": "race"}] * 100}).encode()
    req = urllib.request.Request(url + "/v1/workspaces/acme/environments/prod/encrypt/batch",
                                 body, {"Authorization": "Bearer " + token,
                                        "Content-Type": "application/json"})
    for r in json.load(urllib.request.urlopen(req))["items"]:
        print(r["ciphertext"])
PY
done
wait $(jobs -p | tail -3) 2>/dev/null
python3 - "$T"/nonces1 "$T"/nonces2 "$T"/nonces3 >"$T/nonce.report" <<'PY'
import base64, sys
seen, total = set(), 0
for path in sys.argv[1:]:
    for line in open(path):
        text = line.strip().removeprefix("ekm1:")
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        # The envelope header up to and with the nonce: everything but ciphertext and tag
        # (docs/format.md), so equal prefixes mean one (DK version, nonce) used twice.
        key = raw[:-17]
        total += 1
        seen.add(key)
print(total, len(seen))
PY
read -r total unique <"$T/nonce.report"
check "6000 concurrent encrypts through three replicas ($total)" test "${total:-0}" -eq 6000
check "…used no (DK version, nonce) pair twice" test "${unique:-0}" -eq "${total:-1}"

# A shred whose two steps reach different replicas.
as OWNER_TOKEN "$EKM" --server "${URL[1]}" environment create acme scratch >/dev/null
conf=$(curl -fsS -X POST -H "Authorization: Bearer $OWNER_TOKEN" \
  "${URL[1]}/v1/workspaces/acme/environments/scratch/shred" | python3 -c 'import json,sys; print(json.load(sys.stdin)["confirmation"])')
code=$(curl -sS -o "$T/shred.json" -w '%{http_code}' -X POST -H "Authorization: Bearer $OWNER_TOKEN" \
  -H 'Content-Type: application/json' --data "{\"confirmation\":\"$conf\",\"environment\":\"scratch\"}" \
  "${URL[2]}/v1/workspaces/acme/environments/scratch/shred")
check "a shred confirmed on replica 1 is carried out by replica 2 (HTTP $code)" test "$code" = 200

# A token revoked through replica 1 stops working on replica 3 within the token cache TTL.
as APP_TOKEN "$EKM" --server "${URL[3]}" decrypt -w acme -e prod <"$T/ct1" >/dev/null 2>&1
id=$(echo "$APP_TOKEN" | cut -d_ -f2)
as OWNER_TOKEN "$EKM" --server "${URL[1]}" token revoke "$id" >/dev/null
sleep 6
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $APP_TOKEN" "${URL[3]}/v1/token")
check "a token revoked through replica 1 is refused by replica 3 after 6 s (HTTP $code)" test "$code" = 401

for n in 1 2 3; do stop_ekmd r$n; done
check "the audit log written by three replicas verifies" \
  "$EKM" --store "$U" --root-key-file "$R" audit verify -w acme
summary
