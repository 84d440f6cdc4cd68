#!/usr/bin/env bash
# Catches the mistakes code review misses (in the spirit of s2n's grep_simple_mistakes.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
ban() {  # ban DESCRIPTION REGEX [PATH-EXCLUDE-REGEX]
  local what=$1 re=$2 exclude=${3:-'^$'}
  local hits
  hits=$(grep -rnE --include='*.cc' --include='*.h' "$re" src fuzz bench 2>/dev/null |
    grep -vE "$exclude" | grep -v 'NOLINT(grep-lint)')
  if [ -n "$hits" ]; then
    echo "grep_lint: $what:"; echo "$hits"; status=1
  fi
}
ban "memcmp on possibly secret bytes (use CRYPTO_memcmp, or std::equal for public values)" \
  '\bmemcmp\s*\(' '^src/ekm/base/'
ban "randomness outside base/random (use RandomBytes/RandomSecret)" \
  '\b(rand|srand|random)\s*\(|std::random_device|std::mt19937' '^src/ekm/base/random'
ban "raw EVP_*_free (use OsslPtr)" '\bEVP_[A-Z_]+_free\s*\(' '^src/ekm/base/ossl\.h'
ban "std::string members named like keys or secrets (use SecretBytes)" \
  '^\s*std::string\s+(\w*_)?(key|secret|password|token)_\s*[;={]' '_test\.cc:'
ban "printing to stdout from the library (log with spdlog, or return a value)" \
  'std::cout|printf\s*\(' '^src/ekm/cli/|_main\.cc:|_test\.cc:|^bench/|^fuzz/|snprintf'
ban "a hand-written wipe (the compiler may drop it: use OPENSSL_cleanse)" \
  "std::fill\\s*\\(.*'\\\\0'\\s*\\)"
exit $status
