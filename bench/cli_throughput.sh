#!/usr/bin/env bash
# `ekm encrypt` and `ekm decrypt` of a large file (local mode, to /dev/null) beside
# `openssl speed -evp aes-256-gcm -bytes 1048576` (one process), interleaved round by round so
# that the machine's drift hits both; prints the medians and their ratio (docs/benchmarks.md).
#
#   bash bench/cli_throughput.sh [EKM_BINARY] [MIB] [ROUNDS]
set -euo pipefail
EKM=${1:-build/bench/ekm}
MIB=${2:-256}
ROUNDS=${3:-7}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export HOME=$T AWS_EC2_METADATA_DISABLED=true
"$EKM" --data-dir "$T/d" init >/dev/null 2>&1
"$EKM" --data-dir "$T/d" workspace create acme >/dev/null
"$EKM" --data-dir "$T/d" environment create acme prod >/dev/null
head -c $((MIB * 1024 * 1024)) /dev/urandom >"$T/in"
"$EKM" --data-dir "$T/d" encrypt -w acme -e prod <"$T/in" >"$T/in.ekm"
cmp -s "$T/in" <("$EKM" --data-dir "$T/d" decrypt -w acme -e prod <"$T/in.ekm")

gbps() {  # START_NS END_NS: MIB over that interval, in GB/s
  awk -v a="$1" -v b="$2" -v m="$MIB" 'BEGIN { printf "%.4f\n", m * 1048576 / ((b - a) / 1e9) / 1e9 }'
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }

: >"$T/openssl" ; : >"$T/enc" ; : >"$T/dec"
for _ in $(seq "$ROUNDS"); do
  line=$(openssl speed -mr -seconds 1 -bytes 1048576 -evp aes-256-gcm 2>/dev/null | grep '^+F:' | tail -1)
  echo "${line##*:}" | awk '{print $1 / 1e9}' >>"$T/openssl"   # bytes/s -> GB/s
  t0=$(date +%s%N)
  "$EKM" --data-dir "$T/d" encrypt -w acme -e prod <"$T/in" >/dev/null
  t1=$(date +%s%N)
  "$EKM" --data-dir "$T/d" decrypt -w acme -e prod <"$T/in.ekm" >/dev/null
  t2=$(date +%s%N)
  gbps "$t0" "$t1" >>"$T/enc"
  gbps "$t1" "$t2" >>"$T/dec"
done
o=$(median <"$T/openssl"); e=$(median <"$T/enc"); d=$(median <"$T/dec")
echo "| input | openssl speed (1 MiB, 1 process) | ekm encrypt | ekm decrypt | encrypt ÷ openssl | decrypt ÷ openssl |"
echo "|---|---|---|---|---|---|"
awk -v m="$MIB" -v o="$o" -v e="$e" -v d="$d" 'BEGIN {
  printf "| %d MiB file, local mode, to /dev/null | %.2f GB/s | %.2f GB/s | %.2f GB/s | %.2f× | %.2f× |\n", m, o, e, d, e / o, d / o }'
echo "(medians of $ROUNDS interleaved rounds; whole processes: start, key unwrap, read, seal, write)"
