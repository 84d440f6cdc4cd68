#!/usr/bin/env bash
# End-to-end: ekmd's operable surface. TLS 1.2/1.3 only with ECDHE+AEAD suites, mutual TLS,
# clear start errors for bad certificate files, /metrics (series, no tenant names), /readyz,
# JSON access logs with the request id echoed to the client, and the per-token rate limit.
#   tls_ops_test.sh EKM_BINARY EKMD_BINARY
set -uo pipefail
EKM=$1
EKMD=$2
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_test tls-ops-test

# --- certificates ---------------------------------------------------------------------------
C="$T/certs"
mkdir -p "$C"
mk_ca() {  # mk_ca NAME
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$C/$1.key" -out "$C/$1.pem" -days 2 \
    -subj "/CN=$1" 2>/dev/null
}
mk_cert() {  # mk_cert NAME CA EXTENSIONS
  openssl req -newkey rsa:2048 -nodes -keyout "$C/$1.key" -out "$C/$1.csr" -subj "/CN=$1" \
    2>/dev/null &&
    openssl x509 -req -in "$C/$1.csr" -CA "$C/$2.pem" -CAkey "$C/$2.key" -CAcreateserial \
      -days 2 -out "$C/$1.pem" -extfile <(printf '%s\n' "$3") 2>/dev/null
}
check "make CA" mk_ca ca
check "make other CA" mk_ca other-ca
check "make server cert" mk_cert server ca "subjectAltName=IP:127.0.0.1,DNS:localhost"
check "make client cert" mk_cert client ca "extendedKeyUsage=clientAuth"
check "make stranger cert" mk_cert stranger other-ca "extendedKeyUsage=clientAuth"
# The server's certificate followed by its CA: a chain file.
cat "$C/server.pem" "$C/ca.pem" >"$C/chain.pem"

D="$T/data"
start_ekmd main --data-dir "$D" --tls-cert "$C/chain.pem" --tls-key "$C/server.key" \
  --log-format json || exit 1
MAIN=$PORT
URL="https://127.0.0.1:$MAIN"
export CURL_CA_BUNDLE="$C/ca.pem" EKM_CA_FILE="$C/ca.pem"
check "curl --cacert over https" curl -fsS --cacert "$C/ca.pem" "$URL/healthz" -o /dev/null
refused "curl without the CA is refused" "certificate problem" -- \
  curl -fsS --cacert /etc/ssl/certs/ca-certificates.crt "$URL/healthz"
refused "plain HTTP to the TLS port fails" "Empty reply from server" -- curl -fsS "http://127.0.0.1:$MAIN/healthz"
setup_tokens "$D" "$URL" acme-secret-tenant || fail "setup_tokens"

# --- protocol versions and cipher suites ----------------------------------------------------
sclient() { openssl s_client -connect "127.0.0.1:$MAIN" -servername localhost -CAfile "$C/ca.pem" "$@" </dev/null 2>&1; }
refused "TLS 1.1 refused" "alert protocol version" -- \
  openssl s_client -connect "127.0.0.1:$MAIN" -tls1_1 -cipher 'DEFAULT@SECLEVEL=0'
sclient -tls1_2 >"$T/s12" ; rc=$?
check "TLS 1.2 accepted" test $rc -eq 0
check "TLS 1.2 verified, ECDHE+AEAD" grep -Eq "Cipher is ECDHE-RSA-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)" "$T/s12"
check "TLS 1.2 chain verified" grep -q "Verify return code: 0 (ok)" "$T/s12"
sclient -tls1_3 >"$T/s13"; rc=$?
check "TLS 1.3 accepted" test $rc -eq 0
check "TLS 1.3 negotiated" grep -q "TLSv1.3" "$T/s13"
refused "TLS 1.2 RSA key exchange + CBC refused" "alert handshake failure" -- \
  openssl s_client -connect "127.0.0.1:$MAIN" -tls1_2 -cipher AES128-SHA
refused "TLS 1.2 RSA key exchange + GCM refused" "alert handshake failure" -- \
  openssl s_client -connect "127.0.0.1:$MAIN" -tls1_2 -cipher AES128-GCM-SHA256
refused "TLS 1.2 ECDHE + CBC refused" "alert handshake failure" -- \
  openssl s_client -connect "127.0.0.1:$MAIN" -tls1_2 -cipher ECDHE-RSA-AES128-SHA256
check "no TLS compression" grep -q "Compression: NONE" "$T/s12"

# --- the CLI over https ---------------------------------------------------------------------
check "ekm --server https:// with EKM_CA_FILE" bash -c \
  "EKM_TOKEN=$ADMIN_TOKEN '$EKM' --server '$URL' workspace list | grep -q acme-secret-tenant"
check "ekm environment create over https" env EKM_TOKEN="$OWNER_TOKEN" \
  "$EKM" --server "$URL" environment create acme-secret-tenant prod >/dev/null
echo hello >"$T/p"
check "ekm encrypt over https" env EKM_TOKEN="$APP_TOKEN" \
  "$EKM" --server "$URL" encrypt -w acme-secret-tenant -e prod <"$T/p" >"$T/ct"
check "ekm decrypt over https" bash -c "EKM_TOKEN=$APP_TOKEN '$EKM' --server '$URL' decrypt -w acme-secret-tenant -e prod <'$T/ct' | grep -qx hello"
expect_error "ekm without the CA" "certificate" -- \
  env -u EKM_CA_FILE EKM_TOKEN="$ADMIN_TOKEN" "$EKM" --server "$URL" workspace list

# --- /readyz and /metrics -------------------------------------------------------------------
check "/readyz 200" bash -c "curl -fsS '$URL/readyz' | grep -q '\"status\":\"ready\"'"
curl -fsS -H "Authorization: Bearer $ADMIN_TOKEN" "$URL/metrics" -D "$T/mh" >"$T/metrics"
check "/metrics content type" grep -qi "^content-type: text/plain; version=0.0.4" "$T/mh"
check "/metrics refuses an owner token (admin only)" test "$(curl -s -o /dev/null -w '%{http_code}' \
  -H "Authorization: Bearer $OWNER_TOKEN" "$URL/metrics")" = 403
check "/metrics without a token is 401" test "$(curl -s -o /dev/null -w '%{http_code}' "$URL/metrics")" = 401
check "/readyz needs no token" test "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")" = 200
for series in \
  'ekm_http_requests_total{route="workspace.create",method="POST",status="201"}' \
  'ekm_http_requests_total{route="environment.create",method="POST",status="201"}' \
  'ekm_http_requests_total{route="health",method="GET",status="200"}' \
  'ekm_http_request_duration_seconds_bucket{route="data.encrypt",le="+Inf"}' \
  'ekm_http_request_duration_seconds_count{route="health"}' \
  'ekm_key_cache_hits_total ' 'ekm_key_cache_misses_total ' 'ekm_key_cache_entries ' \
  'ekm_provider_calls_total{provider="platform",operation="wrap",result="ok"}' \
  'ekm_repack_running_jobs 0' 'ekm_repack_data_keys_done 0' 'ekm_repack_data_keys_total 0' \
  '# TYPE ekm_rate_limited_requests_total counter' \
  'ekm_build_info{version="0.1.0"} 1' 'process_start_time_seconds '; do
  check "/metrics has $series" grep -qF -- "$series" "$T/metrics"
done
absent "/metrics names no tenant" "$T/metrics" -e acme-secret-tenant -e prod
check "/metrics lines are well-formed" python3 -c '
import re, sys
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if line.startswith("# HELP ") or line.startswith("# TYPE "): continue
    assert re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eEInfNa]+", line), line' "$T/metrics"

# --- request ids and JSON logs --------------------------------------------------------------
curl -fsS -D "$T/h1" -H "X-Request-Id: tls-ops.test_1" "$URL/healthz" -o /dev/null
check "given X-Request-Id echoed" grep -qi "^x-request-id: tls-ops.test_1" "$T/h1"
curl -fsS -D "$T/h2" -H "X-Request-Id: bad id!" "$URL/healthz" -o /dev/null
GEN=$(sed -n 's/^[Xx]-[Rr]equest-[Ii]d: \([A-Za-z0-9._-]*\).*/\1/p' "$T/h2" | tr -d '\r')
check "malformed X-Request-Id replaced by a generated one" test -n "$GEN" -a "$GEN" != "bad"
SECRET=SeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCrEt1
curl -sS -H "Authorization: Bearer ekm_0123456789abcdef_$SECRET" -H "X-Request-Id: with-token" \
  "$URL/v1/workspaces" -o /dev/null
curl -sS -X POST -H "Content-Type: application/json" -d '{"name":"x"}' -H "X-Request-Id: a-404" \
  "$URL/v1/nowhere" -o /dev/null
sleep 0.2
check "every log line is a JSON object with ts, level, msg" python3 -c '
import json, sys
n = 0
for line in open(sys.argv[1]):
    o = json.loads(line)
    assert isinstance(o, dict) and {"ts", "level", "msg"} <= o.keys(), line
    n += 1
assert n > 5, n' "$T/main.log"
check "access log line carries the request id and fields" python3 -c '
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
def find(rid):
    got = [o for o in lines if o.get("request_id") == rid]
    assert len(got) == 1, (rid, got)
    return got[0]
o = find("tls-ops.test_1")
assert o["msg"] == "request" and o["route"] == "health" and o["method"] == "GET", o
assert o["status"] == 200 and o["duration_ms"] >= 0 and o["bytes_in"] == 0 and o["bytes_out"] > 0, o
assert o["remote"] == "127.0.0.1" and "token_id" not in o, o
find(sys.argv[2])
t = find("with-token")
assert t["token_id"] == "0123456789abcdef", t
n = find("a-404")
assert n["route"] == "unmatched" and n["status"] == 404 and n["bytes_in"] == 12, n' "$T/main.log" "$GEN"
absent "no token secret and no body in the logs" "$T/main.log" -e "$SECRET" -e hello

# --- mutual TLS (a second node on the same store) -------------------------------------------
start_ekmd mtls --data-dir "$D" --tls-cert "$C/server.pem" --tls-key "$C/server.key" \
  --tls-client-ca "$C/ca.pem" --tls-client-auth require || exit 1
MURL="https://127.0.0.1:$PORT"
refused "mTLS: no client cert refused" "alert certificate required" -- curl -fsS "$MURL/healthz"
refused "mTLS: a cert of another CA refused" "alert unknown ca" -- \
  curl -fsS --cert "$C/stranger.pem" --key "$C/stranger.key" "$MURL/healthz"
check "mTLS: a cert from the CA works" curl -fsS --cert "$C/client.pem" --key "$C/client.key" \
  "$MURL/healthz" -o /dev/null
check "mTLS: ekm --client-cert/--client-key" bash -c "EKM_TOKEN=$ADMIN_TOKEN '$EKM' --server '$MURL' --client-cert '$C/client.pem' --client-key '$C/client.key' workspace list | grep -q acme-secret-tenant"
check "mTLS: EKM_CLIENT_CERT/EKM_CLIENT_KEY" bash -c "EKM_TOKEN=$ADMIN_TOKEN EKM_CLIENT_CERT='$C/client.pem' EKM_CLIENT_KEY='$C/client.key' '$EKM' --server '$MURL' workspace list | grep -q acme-secret-tenant"
expect_error "mTLS: ekm without a client cert" "client" -- \
  env EKM_TOKEN="$ADMIN_TOKEN" "$EKM" --server "$MURL" workspace list
start_ekmd mtls-optional --data-dir "$D" --tls-cert "$C/server.pem" --tls-key "$C/server.key" \
  --tls-client-ca "$C/ca.pem" || exit 1
check "mTLS optional: no client cert accepted" curl -fsS "https://127.0.0.1:$PORT/healthz" -o /dev/null
refused "mTLS optional: a cert of another CA refused" "alert unknown ca" -- \
  curl -fsS --cert "$C/stranger.pem" --key "$C/stranger.key" "https://127.0.0.1:$PORT/healthz"

# --- start errors ---------------------------------------------------------------------------
expect_error "mismatched key" "does not match the certificate" -- \
  "$EKMD" --data-dir "$D" --listen 127.0.0.1:0 --tls-cert "$C/server.pem" --tls-key "$C/client.key"
expect_error "missing cert" "cannot read --tls-cert $C/none.pem" -- \
  "$EKMD" --data-dir "$D" --listen 127.0.0.1:0 --tls-cert "$C/none.pem" --tls-key "$C/server.key"
echo "not a certificate" >"$C/junk.pem"
expect_error "junk cert" "is not a PEM certificate" -- \
  "$EKMD" --data-dir "$D" --listen 127.0.0.1:0 --tls-cert "$C/junk.pem" --tls-key "$C/server.key"
expect_error "key without cert" "needs both --tls-cert and --tls-key" -- \
  "$EKMD" --data-dir "$D" --listen 127.0.0.1:0 --tls-key "$C/server.key"
expect_error "client auth without CA" "--tls-client-auth needs --tls-client-ca" -- \
  "$EKMD" --data-dir "$D" --listen 127.0.0.1:0 --tls-cert "$C/server.pem" --tls-key "$C/server.key" --tls-client-auth require
expect_error "plain HTTP on 0.0.0.0 still refused" "refusing to serve plain HTTP" -- \
  "$EKMD" --data-dir "$D" --listen 0.0.0.0:0

# --- rate limit (plain HTTP on loopback, its own data directory) ----------------------------
# The limiter keys on the token id and comes after authentication (a request with a bad token is
# a 401, never counted), so real tokens of this node: its bootstrap admin token spends 2 of its
# burst of 3 on creating a workspace and its owner, the owner 2 on two auditor tokens.
start_ekmd limited --data-dir "$T/data2" --rate-limit 0.2 --rate-limit-burst 3 \
  --metrics-unauthenticated || exit 1
LURL="http://127.0.0.1:$PORT"
for _ in $(seq 50); do [ -s "$T/data2/bootstrap-admin-token" ] && break; sleep 0.1; done
ADMIN2=$(head -n1 "$T/data2/bootstrap-admin-token")
check "limited node: create a workspace" test "$(curl -s -o /dev/null -w '%{http_code}' -X POST \
  -H "Authorization: Bearer $ADMIN2" -H 'Content-Type: application/json' -d '{"name":"rl"}' \
  "$LURL/v1/workspaces")" = 201
OWNER2=$(mint_token "$LURL" "$ADMIN2" owner rl) || fail "mint the owner"
TOKEN_A=$(mint_token "$LURL" "$OWNER2" auditor rl) || fail "mint token A"
TOKEN_B=$(mint_token "$LURL" "$OWNER2" auditor rl) || fail "mint token B"
check "a bad secret is 401, not limited" test "$(for _ in 1 2 3 4 5; do curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer ekm_00000000000000aa_$SECRET" "$LURL/v1/workspaces"; done)" = 401401401401401
codes=()
for _ in 1 2 3 4 5; do
  codes+=("$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN_A" "$LURL/v1/workspaces")")
done
check "a burst of 3 passes (${codes[*]})" test "${codes[0]}" = 200 -a "${codes[1]}" = 200 -a "${codes[2]}" = 200
check "then 429 (${codes[*]})" test "${codes[3]}" = 429 -a "${codes[4]}" = 429
curl -s -D "$T/h429" -o "$T/b429" -H "Authorization: Bearer $TOKEN_A" "$LURL/v1/workspaces"
RA=$(sed -n 's/^[Rr]etry-[Aa]fter: \([0-9]*\).*/\1/p' "$T/h429" | tr -d '\r')
check "429 has Retry-After ($RA)" test -n "$RA" -a "${RA:-0}" -ge 1
check "429 body is resource_exhausted" grep -q '"code":"resource_exhausted"' "$T/b429"
check "another token is not limited" test "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN_B" "$LURL/v1/workspaces")" = 200
check "probes are never limited" test "$(for _ in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{http_code}' "$LURL/healthz"; done)" = 200200200200200200
sleep "${RA:-1}"
check "recovers after Retry-After" test "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN_A" "$LURL/v1/workspaces")" = 200
check "limited requests counted" bash -c "curl -fsS '$LURL/metrics' | grep -q 'ekm_rate_limited_requests_total{route=\"workspace.list\"} [1-9]'"

summary
