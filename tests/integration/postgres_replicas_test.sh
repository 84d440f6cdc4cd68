#!/usr/bin/env bash
# Several ekmd replicas on one PostgreSQL store (run beside a throwaway cluster:
# tests/peers/with_postgres.sh gives EKM_TEST_POSTGRES_URL):
#   - a replica on an empty database without its root key file refuses; `ekm --store URL
#     --root-key-file F init` initializes the store and prints the admin token;
#   - three replicas started at once come up on the one schema; one given another root key
#     refuses, naming the root key;
#   - data encrypted through any replica decrypts through every other (single and stream);
#   - concurrent encrypts of one scope through all three: no (DK version, nonce) pair twice;
#   - every answer names its replica (Ekm-Node; node in /v1/key-cache); a DK rotated through one
#     replica is used by the others within seconds;
#   - a shred whose two steps reach different replicas, and the other replicas refuse the
#     shredded environment's data within seconds (cluster notices), though their key caches
#     (TTL 300 s) still held its keys; a token revoked on one is refused by the others as fast;
#   - an EK rotation's repack, its lease holder killed with -9 mid-repack: another replica
#     takes the lease over and finishes it, and everything decrypts;
#   - PostgreSQL stopped for 3 s under load: the requests that need the store answer 503 with
#     Retry-After (never a hang or a 500), then the replicas reconnect by themselves; every
#     acknowledged ciphertext decrypts afterwards; the audit log verifies;
#   - two replicas started at once on an empty database migrate it once and make one admin token.
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
# undecryptable URL ENV FILE: how many of FILE's "PLAINTEXT CIPHERTEXT" lines do not decrypt
# to their plaintext through URL.
undecryptable() {
  local url=$1 env=$2 file=$3 want ct got bad=0
  while read -r want ct; do
    got=$(echo "$ct" | as APP_TOKEN "$EKM" --server "$url" decrypt -w acme -e "$env" 2>/dev/null)
    [ "$got" = "$want" ] || bad=$((bad + 1))
  done <"$file"
  echo "$bad"
}

start_ekmd nokey --data-dir "$T/d0" --store "$U" --root-key-file "$R" >/dev/null 2>&1
check "a replica without its root key file does not start" test -z "${EKMD_PIDS[nokey]:-}"
check "…and says how to initialize the store" grep -q "ekm --store URL --root-key-file $R init" "$T/nokey.log"

"$EKM" --store "$U" --root-key-file "$R" init >"$T/init.out" 2>"$T/init.err"
check "ekm --store URL --root-key-file F init initializes the store" grep -q "initialized ekm store" "$T/init.out"
ADMIN_TOKEN=$(sed -n 's/^admin token: //p' "$T/init.out")
check "…and prints the bootstrap admin token" test -n "$ADMIN_TOKEN"
check "…and writes the root key file 0600" test "$(stat -c %a "$R")" = 600

# Three replicas at once, each reserving nonces in the smallest leases it may (4096 messages),
# so the concurrent encrypts below take many leases of one DK version from all three.
for n in 1 2 3; do
  "$EKMD" --data-dir "$T/d$n" --store "$U" --root-key-file "$R" --listen 127.0.0.1:0 \
    --node-name "r$n" --nonce-lease-size 4096 >"$T/r$n.log" 2>&1 &
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
# EKM_REPLICA_NONCE_BATCHES batches of 100 through each (default 20: 6000 in all); the long run
# of docs/operations.md takes 3334 (1,000,200 pairs). Only the rate limit's 429 is retried.
BATCHES=${EKM_REPLICA_NONCE_BATCHES:-20}
for n in 1 2 3; do
  python3 - "${URL[$n]}" "$APP_TOKEN" "$BATCHES" >"$T/nonces$n" <<'PY' &
import base64, json, sys, time, urllib.error, urllib.request
url, token, batches = sys.argv[1], sys.argv[2], int(sys.argv[3])
body = json.dumps({"items": [{"plaintext": base64.b64encode(b"x").decode(),
                              "scope": "race"}] * 100}).encode()
done = 0
while done < batches:
    req = urllib.request.Request(url + "/v1/workspaces/acme/environments/prod/encrypt/batch",
                                 body, {"Authorization": "Bearer " + token,
                                        "Content-Type": "application/json"})
    try:
        items = json.load(urllib.request.urlopen(req))["items"]
    except urllib.error.HTTPError as e:
        if e.code != 429:  # the token's rate limit, waited out as a client does; a 503 fails
            raise
        time.sleep(float(e.headers.get("Retry-After") or 1))
        continue
    for r in items:
        print(r["ciphertext"])
    done += 1
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
check "$((BATCHES * 300)) concurrent encrypts through three replicas ($total)" \
  test "${total:-0}" -eq $((BATCHES * 300))
check "…used no (DK version, nonce) pair twice" test "${unique:-0}" -eq "${total:-1}"

for n in 1 2 3; do
  node=$(curl -sS -D - -o "$T/kc$n.json" -H "Authorization: Bearer $ADMIN_TOKEN" "${URL[$n]}/v1/key-cache" \
    | tr -d '\r' | sed -n 's/^Ekm-Node: //Ip')
  check "replica $n names itself in Ekm-Node ($node)" test "$node" = "r$n"
  check "…and in /v1/key-cache" python3 -c "import json,sys; sys.exit(json.load(open('$T/kc$n.json'))['node'] != 'r$n')"
done

# A DK rotated through replica 1: replica 3, which encrypted under the old version (and keeps
# it cached for 300 s), encrypts under the new one within seconds.
dk_version() { python3 -c '
import base64, sys
t = sys.stdin.read().strip().removeprefix("ekm1:")
b = base64.urlsafe_b64decode(t + "=" * (-len(t) % 4))
i = 5
for _ in range(3): i += 1 + b[i]
print(int.from_bytes(b[i:i + 4], "big"))'; }
echo x | as APP_TOKEN "$EKM" --server "${URL[3]}" encrypt -w acme -e prod -s rot -t >"$T/rot1"
before=$(dk_version <"$T/rot1")
as OWNER_TOKEN "$EKM" --server "${URL[1]}" key rotate -w acme -e prod --scope rot >/dev/null
after=""
for i in $(seq 50); do
  after=$(echo x | as APP_TOKEN "$EKM" --server "${URL[3]}" encrypt -w acme -e prod -s rot -t | dk_version)
  [ "$after" != "$before" ] && break
  sleep 0.1
done
check "a DK rotated through replica 1 is used by replica 3 within 5 s (v$before, then v$after)" \
  test "$after" = $((before + 1))

# A shred whose two steps reach different replicas; replica 3 held the environment's keys.
as OWNER_TOKEN "$EKM" --server "${URL[1]}" environment create acme scratch >/dev/null
echo "doomed" | as APP_TOKEN "$EKM" --server "${URL[3]}" encrypt -w acme -e scratch >"$T/doomed.ct" 2>/dev/null
check "replica 3 decrypts scratch's data before the shred" \
  as APP_TOKEN "$EKM" --server "${URL[3]}" decrypt -w acme -e scratch <"$T/doomed.ct"
conf=$(curl -fsS -X POST -H "Authorization: Bearer $OWNER_TOKEN" \
  "${URL[1]}/v1/workspaces/acme/environments/scratch/shred" | python3 -c 'import json,sys; print(json.load(sys.stdin)["confirmation"])')
code=$(curl -sS -o "$T/shred.json" -w '%{http_code}' -X POST -H "Authorization: Bearer $OWNER_TOKEN" \
  -H 'Content-Type: application/json' --data "{\"confirmation\":\"$conf\",\"environment\":\"scratch\"}" \
  "${URL[2]}/v1/workspaces/acme/environments/scratch/shred")
check "a shred confirmed on replica 1 is carried out by replica 2 (HTTP $code)" test "$code" = 200
refused=""
for i in $(seq 50); do
  if ! as APP_TOKEN "$EKM" --server "${URL[3]}" decrypt -w acme -e scratch <"$T/doomed.ct" >/dev/null 2>&1; then
    refused=$i; break
  fi
  sleep 0.1
done
check "replica 3 refuses the shredded environment's data within 5 s, not at its TTL (after ${refused:-never} tries)" test -n "$refused"

# A token revoked through replica 1 stops working on replica 3 within seconds.
as APP_TOKEN "$EKM" --server "${URL[3]}" decrypt -w acme -e prod <"$T/ct1" >/dev/null 2>&1
REVOKED=$(mint_token "${URL[1]}" "$OWNER_TOKEN" app acme)
curl -fsS -H "Authorization: Bearer $REVOKED" "${URL[3]}/v1/token" >/dev/null
id=$(echo "$REVOKED" | cut -d_ -f2)
as OWNER_TOKEN "$EKM" --server "${URL[1]}" token revoke "$id" >/dev/null
code=""
for i in $(seq 50); do
  code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $REVOKED" "${URL[3]}/v1/token")
  [ "$code" = 401 ] && break
  sleep 0.1
done
check "a token revoked through replica 1 is refused by replica 3 within 5 s (HTTP $code)" test "$code" = 401

# An EK rotation's repack, its lease holder killed mid-repack: another replica finishes it.
as OWNER_TOKEN "$EKM" --server "${URL[1]}" environment create acme big >/dev/null
python3 - "${URL[1]}" "$APP_TOKEN" "$T/big.cts" <<'PY'
import base64, json, sys, urllib.request
url, token, out = sys.argv[1], sys.argv[2], sys.argv[3]
with open(out, "w") as f:
    for b in range(12):
        items = [{"plaintext": base64.b64encode(b"m%d" % i).decode(), "scope": "s%d-%d" % (b, i)}
                 for i in range(1000)]
        req = urllib.request.Request(url + "/v1/workspaces/acme/environments/big/encrypt/batch",
                                     json.dumps({"items": items}).encode(),
                                     {"Authorization": "Bearer " + token,
                                      "Content-Type": "application/json"})
        for i, r in zip(range(1000), json.load(urllib.request.urlopen(req))["items"]):
            f.write("m%d %s\n" % (i, r["ciphertext"]))
PY
check "12,000 data keys in environment big" test "$(wc -l <"$T/big.cts")" -eq 12000
as OWNER_TOKEN "$EKM" --server "${URL[1]}" key rotate -w acme -e big >/dev/null
repack() { curl -fsS -H "Authorization: Bearer $OWNER_TOKEN" "$1/v1/workspaces/acme/environments/big/repack"; }
holder=""
for i in $(seq 200); do
  holder=$(psql "$U" -XAtc "SELECT holder FROM leases WHERE name LIKE 'repack/%'" 2>/dev/null | head -1)
  [ -n "$holder" ] && break
  sleep 0.05
done
victim=${holder%%/*}
check "one replica holds the repack's lease ($holder)" test -n "$victim"
state=$(repack "${URL[1]}" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["state"], d["done"], d["total"])')
kill9_ekmd "$victim"
echo "killed $victim with -9 at repack state: $state"
survivor=1; [ "$victim" = r1 ] && survivor=2
finished=""
for i in $(seq 120); do
  if repack "${URL[$survivor]}" | python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)["state"] != "finished")' 2>/dev/null; then
    finished=$i; break
  fi
  sleep 0.5
done
check "another replica took the lease over and finished the repack (after ${finished:-never} polls)" test -n "$finished"
left=$(psql "$U" -XAtc "SELECT count(*) FROM data_keys d JOIN environments e ON e.id = d.environment_id WHERE e.name = 'big' AND d.ek_version < e.current_ek_version")
check "no data key of big is left under the old EK ($left)" test "$left" = 0
awk 'NR % 400 == 1' "$T/big.cts" >"$T/big.sample"
bad=$(undecryptable "${URL[$survivor]}" big "$T/big.sample")
check "every sampled ciphertext of big decrypts after the takeover ($bad bad)" test "$bad" -eq 0

# PostgreSQL restarted under load: each request makes a new scope, so each needs the store.
python3 - "${URL[$survivor]}" "$APP_TOKEN" "$T/load" <<'PY' &
import base64, json, sys, time, urllib.error, urllib.request
url, token, out = sys.argv[1], sys.argv[2], sys.argv[3]
stats = {"ok": 0, "503": 0, "503_without_retry_after": 0, "other": []}
with open(out + ".acked", "w") as acked:
    end, i = time.time() + 12, 0
    while time.time() < end:
        i += 1
        body = json.dumps({"plaintext": base64.b64encode(b"p%d" % i).decode(),
                           "scope": "restart-%d" % i}).encode()
        req = urllib.request.Request(url + "/v1/workspaces/acme/environments/prod/encrypt", body,
                                     {"Authorization": "Bearer " + token,
                                      "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                acked.write("p%d %s\n" % (i, json.load(r)["ciphertext"]))
                stats["ok"] += 1
        except urllib.error.HTTPError as e:
            if e.code == 503:
                stats["503"] += 1
                if not e.headers.get("Retry-After"):
                    stats["503_without_retry_after"] += 1
            else:
                stats["other"].append(e.code)
        time.sleep(0.02)
json.dump(stats, open(out + ".json", "w"))
PY
LOAD=$!
sleep 3
"$EKM_TEST_POSTGRES_CTL" stop >/dev/null
ready_down=$(curl -sS -o /dev/null -w '%{http_code}' "${URL[$survivor]}/readyz")
sleep 3
"$EKM_TEST_POSTGRES_CTL" start >/dev/null
wait $LOAD
cat "$T/load.json"; echo
check "while PostgreSQL was down, /readyz said so (HTTP $ready_down)" test "$ready_down" = 503
check "…requests needing the store got 503 with Retry-After, nothing else" python3 -c "
import json,sys; d=json.load(open('$T/load.json'))
sys.exit(not (d['503'] > 0 and d['503_without_retry_after'] == 0 and not d['other']))"
check "…and the replica recovered by itself" python3 -c "
import sys; lines=open('$T/load.acked').read().split(chr(10)); sys.exit(len(lines) < 20)"
code=$(curl -sS -o /dev/null -w '%{http_code}' "${URL[$survivor]}/readyz")
check "/readyz is 200 again (HTTP $code)" test "$code" = 200
awk 'NR % 10 == 1' "$T/load.acked" >"$T/load.sample"
bad=$(undecryptable "${URL[$survivor]}" prod "$T/load.sample")
check "every sampled acknowledged ciphertext decrypts after the restart ($bad bad)" test "$bad" -eq 0

for n in 1 2 3; do [ -n "${EKMD_PIDS[r$n]:-}" ] && stop_ekmd r$n; done
check "the audit log written by three replicas verifies" \
  "$EKM" --store "$U" --root-key-file "$R" audit verify -w acme

# Two replicas started at once on an empty database, given one root key file: the schema is
# migrated once (under the migration lock) and they make one bootstrap admin token between them.
U2="${U%/*}/empty_at_start"
psql -q "$U" -c "CREATE DATABASE empty_at_start" >/dev/null
head -c 32 /dev/urandom | xxd -p -c 64 >"$T/fresh.key"; chmod 600 "$T/fresh.key"
for n in 5 6; do
  "$EKMD" --data-dir "$T/d$n" --store "$U2" --root-key-file "$T/fresh.key" --listen 127.0.0.1:0 \
    --node-name "r$n" >"$T/r$n.log" 2>&1 &
  EKMD_PIDS[r$n]=$!
done
for n in 5 6; do
  for i in $(seq 200); do
    p=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$T/r$n.log" | head -1)
    [ -n "$p" ] && curl -fsS "http://127.0.0.1:$p/readyz" >/dev/null 2>&1 && break
    sleep 0.05
  done
  check "replica $n, started at once with another on an empty database, is ready" \
    curl -fsS "http://127.0.0.1:$p/readyz" -o /dev/null
done
q() { psql -qtA "$U2" -c "$1"; }
m=$(q "SELECT COUNT(*) || ' of ' || MAX(version) FROM schema_migrations")
check "every migration applied, once ($m)" test "${m% of *}" = "${m#* of }"
check "one bootstrap admin token between them ($(q "SELECT COUNT(*) FROM api_tokens"))" \
  test "$(q "SELECT COUNT(*) FROM api_tokens WHERE role = 'admin'")" = 1
check "…written to one replica's data directory" \
  test "$(ls "$T"/d5/bootstrap-admin-token "$T"/d6/bootstrap-admin-token 2>/dev/null | wc -l)" = 1
for n in 5 6; do stop_ekmd r$n; done
summary
