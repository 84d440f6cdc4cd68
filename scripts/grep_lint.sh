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

# The folders' layers, lowest first: a folder includes only folders of lower layers (tests and
# testing/ may include anything). docs/architecture.md "Modules" draws the same graph.
layers=$(python3 - <<'PY'
import os, re
LAYERS = [["base", "metrics"], ["crypto", "audit", "auth"], ["envelope", "store", "api"],
          ["policy", "provider", "events"], ["keys"], ["repack"], ["service"],
          ["client", "server"], ["cli"]]
rank = {f: i for i, layer in enumerate(LAYERS) for f in layer}
root = "src/ekm"
for dp, _, fs in sorted(os.walk(root)):
    folder = os.path.relpath(dp, root).split("/")[0]
    if folder in (".", "testing"):
        continue
    for f in sorted(fs):
        if not f.endswith((".h", ".cc")) or f.endswith("_test.cc"):
            continue
        path = os.path.join(dp, f)
        if folder not in rank:
            print(f"{path}: folder {folder}/ has no layer in scripts/grep_lint.sh")
            continue
        for n, line in enumerate(open(path, errors="replace"), 1):
            m = re.match(r'#include "ekm/([a-z0-9_]+)/', line)
            if not m or m.group(1) == folder:
                continue
            to = m.group(1)
            if to not in rank or rank[to] >= rank[folder]:
                print(f"{path}:{n}: {folder}/ includes {to}/, which is not below it")
PY
)
if [ -n "$layers" ]; then
  echo "grep_lint: an include against the folder layers:"; echo "$layers"; status=1
fi

# clang-format (.clang-format: Google style, 100 columns) on every C++ source.
if command -v clang-format >/dev/null; then
  unformatted=$(find src fuzz bench tests -name '*.cc' -o -name '*.h' | sort |
    xargs clang-format --dry-run 2>&1 | grep -oE '^[^:]+\.(cc|h):' | sort -u)
  if [ -n "$unformatted" ]; then
    echo "grep_lint: not clang-formatted (run clang-format -i on them):"; echo "$unformatted"
    status=1
  fi
else
  echo "grep_lint: clang-format is missing (scripts/install-deps.sh installs it)"; status=1
fi
exit $status
