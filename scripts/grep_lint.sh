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
# Looked up beside the including file first, such an include would get round the include roots
# that hold the build to the layers (top CMakeLists.txt).
ban 'a quoted include not spelt "ekm/<folder>/<file>"' \
  '^\s*#\s*include\s+"([^e]|e[^k]|ek[^m]|ekm[^/]|[^"]*\.\./)'

# The folders' layers, lowest first: a folder includes only folders of lower layers (tests and
# testing/ may include anything). docs/architecture.md "Modules" draws the same graph. The build
# enforces them too (one library per folder, each seeing only the headers of what it links: the
# top CMakeLists.txt); this also checks that the CMake graph agrees: each library links exactly
# the libraries its files include (PUBLIC those its headers include, PRIVATE the rest), only
# libraries of lower layers (or of its own folder: ekm_provider_aws links ekm_provider), no cycle.
layers=$(python3 - <<'PY'
import glob, os, re
LAYERS = [["base", "metrics"], ["crypto", "audit", "auth"], ["envelope", "store"],
          ["policy", "provider", "events"], ["keys", "api"], ["repack"], ["service"],
          ["client", "server"], ["cli"]]
rank = {f: i for i, layer in enumerate(LAYERS) for f in layer}
root = "src/ekm"
INCLUDE = re.compile(r'#include "ekm/([a-z0-9_/]+)/[^/"]+"')
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

# The CMake graph: each target's folders (ekm_headers(TARGET FOLDER...)) and its links to ekm_*
# libraries (target_link_libraries), from the CMakeLists.txt under src/ekm.
folders, links, where = {}, {}, {}
for cm in sorted(glob.glob(f"{root}/**/CMakeLists.txt", recursive=True)):
    text = re.sub(r"#[^\n]*", "", open(cm).read())
    for m in re.finditer(r"ekm_headers\(\s*(\w+)([^)]*)\)", text):
        folders[m.group(1)] = m.group(2).split()
        where[m.group(1)] = cm
    for m in re.finditer(r"target_link_libraries\(\s*(\w+)([^)]*)\)", text):
        scope = "PRIVATE"
        for word in m.group(2).split():
            if word in ("PUBLIC", "PRIVATE", "INTERFACE"):
                scope = "PRIVATE" if word == "PRIVATE" else "PUBLIC"
            elif word.startswith("ekm_"):
                links.setdefault(m.group(1), {"PUBLIC": set(), "PRIVATE": set()})[scope].add(word)
owner = {d: lib for lib, ds in folders.items() for d in ds}
for dp, _, fs in sorted(os.walk(root)):
    d = os.path.relpath(dp, root)
    if d != "." and any(f.endswith((".h", ".cc")) for f in fs) and d not in owner:
        print(f"{dp}/: no target's ekm_headers(...) names it (each folder belongs to one library)")
for lib, ds in sorted(folders.items()):
    top = ds[0].split("/")[0]
    is_library = re.search(rf"add_library\(\s*{lib}\b", open(where[lib]).read()) is not None
    uses = {"PUBLIC": {}, "PRIVATE": {}}  # library -> a file that includes it
    for d in ds:
        for f in sorted(os.listdir(os.path.join(root, d))):
            if not f.endswith((".h", ".cc")) or f.endswith(("_test.cc", "_main.cc")):
                continue
            # An _impl.h header is the folder's own (the build keeps it off dependents' paths).
            public = f.endswith(".h") and not f.endswith("_impl.h")
            scope = "PUBLIC" if public and is_library else "PRIVATE"
            for line in open(os.path.join(root, d, f), errors="replace"):
                m = INCLUDE.match(line)
                if not m:
                    continue
                to = owner.get(m.group(1))
                if to is None:
                    print(f"{root}/{d}/{f}: includes ekm/{m.group(1)}/, which no library has")
                elif to != lib:
                    uses[scope].setdefault(to, f"{d}/{f}")
    for to in uses["PUBLIC"]:
        uses["PRIVATE"].pop(to, None)
    have = links.get(lib, {"PUBLIC": set(), "PRIVATE": set()})
    for scope in ("PUBLIC", "PRIVATE"):
        for to, f in sorted(uses[scope].items()):
            if to not in have[scope]:
                print(f"{where[lib]}: {lib} must link {to} {scope} ({root}/{f} includes it)")
        for to in sorted(have[scope] - set(uses[scope])):
            if scope == "PUBLIC" and to in uses["PRIVATE"]:
                why = "only its .cc files include it (PRIVATE)"
            elif scope == "PRIVATE" and to in uses["PUBLIC"]:
                why = "its headers include it (PUBLIC)"
            else:
                why = "none of its files includes it"
            print(f"{where[lib]}: {lib} links {to} {scope}, but {why}")
    if top == "testing":
        continue
    for to in sorted(have["PUBLIC"] | have["PRIVATE"]):
        to_top = folders[to][0].split("/")[0] if to in folders else None
        if to_top not in rank or (to_top != top and rank[to_top] >= rank[top]):
            print(f"{where[lib]}: {lib} ({top}/) links {to} ({to_top}/), which is not below it")
# No cycle among the libraries (CMake links cycles of static libraries without a word).
state = {}
def visit(lib, path):
    state[lib] = "open"
    have = links.get(lib, {"PUBLIC": set(), "PRIVATE": set()})
    for to in sorted(have["PUBLIC"] | have["PRIVATE"]):
        if state.get(to) == "open":
            print("a cycle of library links: " + " -> ".join(path[path.index(to):] + [to]))
        elif to not in state:
            visit(to, path + [to])
    state[lib] = "done"
for lib in sorted(folders):
    if lib not in state:
        visit(lib, [lib])
PY
)
if [ -n "$layers" ]; then
  echo "grep_lint: an include or a library link against the folder layers:"; echo "$layers"
  status=1
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
