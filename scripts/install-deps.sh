#!/usr/bin/env bash
# Installs every Debian 12 package ekm needs to build, run and test.
# Usage: scripts/install-deps.sh            (run as root, or with sudo available)
#        scripts/install-deps.sh --bench    also what bench/run.sh uses (docs/benchmarks.md)
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "error: run as root or install sudo" >&2; exit 1; }
  SUDO="sudo"
fi
PACKAGES=(
  # build
  build-essential cmake pkg-config clang libclang-rt-14-dev lld clang-format
  # libraries
  libssl-dev libsqlite3-dev libpq-dev libcurl4-openssl-dev libboost-dev libxml2-dev
  nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # tools used by the tests
  curl openssl xxd sqlite3 python3 python3-cryptography python3-yaml python3-jsonschema time
  procps util-linux
  # a throwaway PostgreSQL cluster per test run (tests/peers/with_postgres.sh)
  postgresql-15
)
if [ "${1:-}" = "--bench" ]; then
  # load generator, the static-file baseline, plots, profilers
  PACKAGES+=(wrk nginx-light python3-matplotlib linux-perf valgrind)
fi
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The benchmarks start their own nginx on 127.0.0.1. Where systemd started Debian's nginx
# service on port 80 as part of the install just made, stop and disable it again (an nginx
# that was there before is left alone).
if [[ " ${missing[*]} " == *" nginx-light "* ]] && command -v systemctl >/dev/null &&
   systemctl is-enabled --quiet nginx 2>/dev/null; then
  $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
fi
