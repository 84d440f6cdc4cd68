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

# --- issue5-A ---
# setup_tokens DATA_DIR SERVER_URL WORKSPACE: call right after ekmd is up. Reads the bootstrap
# admin token ekmd wrote to DATA_DIR/bootstrap-admin-token (or ADMIN_TOKEN if already set),
# creates WORKSPACE (an existing one is fine) and exports ADMIN_TOKEN, OWNER_TOKEN, KM_TOKEN,
# APP_TOKEN and AUDITOR_TOKEN for it. As a platform would: the admin creates the workspace's
# owner (it may create no other role), the owner the others.
setup_tokens() {
  local dir=$1 url=$2 ws=$3 i
  if [ -z "${ADMIN_TOKEN:-}" ] || [ "${ADMIN_TOKEN:-}" = placeholder ]; then
    for i in $(seq 1 50); do [ -s "$dir/bootstrap-admin-token" ] && break; sleep 0.1; done
    ADMIN_TOKEN=$(head -n1 "$dir/bootstrap-admin-token" 2>/dev/null)
  fi
  export ADMIN_TOKEN
  local code
  code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $ADMIN_TOKEN" \
    -H 'Content-Type: application/json' --data "{\"name\": \"$ws\"}" "$url/v1/workspaces")
  if [ "$code" != 201 ] && [ "$code" != 409 ]; then
    echo "setup_tokens: creating workspace $ws answered HTTP $code" >&2
    return 1
  fi
  OWNER_TOKEN=$(mint_token "$url" "$ADMIN_TOKEN" owner "$ws") || return 1
  KM_TOKEN=$(mint_token "$url" "$OWNER_TOKEN" key-manager "$ws") || return 1
  APP_TOKEN=$(mint_token "$url" "$OWNER_TOKEN" app "$ws") || return 1
  AUDITOR_TOKEN=$(mint_token "$url" "$OWNER_TOKEN" auditor "$ws") || return 1
  export OWNER_TOKEN KM_TOKEN APP_TOKEN AUDITOR_TOKEN
}
# mint_token URL AS_TOKEN ROLE WORKSPACE [ENVIRONMENT]: prints a new token of ROLE.
mint_token() {
  local url=$1 as=$2 role=$3 ws=$4 env=${5:-} body out
  body="{\"role\": \"$role\", \"workspace\": \"$ws\", \"description\": \"test\""
  [ -n "$env" ] && body="$body, \"environments\": [\"$env\"]"
  body="$body}"
  out=$(curl -sS -X POST -H "Authorization: Bearer $as" -H 'Content-Type: application/json' \
    --data "$body" "$url/v1/tokens") || return 1
  out=$(printf '%s' "$out" | sed -n 's/.*"token": *"\(ekm_[^"]*\)".*/\1/p')
  [ -n "$out" ] || { echo "mint_token: no $role token for $ws" >&2; return 1; }
  printf '%s\n' "$out"
}
