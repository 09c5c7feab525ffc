#!/usr/bin/env bash
# fuzz.sh - runs the coverage-guided fuzz targets in fuzz/ (cargo-fuzz, libFuzzer + ASan).
#
# Usage: scripts/fuzz.sh [-t SECONDS | -n RUNS] [TARGET...]
#   -t  seconds per target (default 5: the smoke run of .ci/run)
#   -n  executions per target instead of a time limit
#   TARGET  default: every target in fuzz/Cargo.toml
# Each target starts from its committed seeds (fuzz/corpus/TARGET) and writes what it learns
# to a scratch corpus, so the committed seeds stay small. Prints one line per target:
#   fuzz TARGET runs=N secs=S exec_per_s=R result=ok|crash
# A crash leaves its input in fuzz/artifacts/TARGET/ and makes the script exit 1; turn the
# input into a regression test (a unit test with the bytes) before fixing it.
# Installs cargo-fuzz when missing; runs on the stable toolchain through RUSTC_BOOTSTRAP=1.
# nat_engine enters a private network namespace (root, or an unprivileged user namespace),
# so nothing the NAT does while fuzzed can leave the machine.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
limit=(-max_total_time=5)
while getopts "t:n:" o; do
  case $o in
    t) limit=(-max_total_time="$OPTARG") ;;
    n) limit=(-runs="$OPTARG") ;;
    *) sed -n 2,14p "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | tail -n +2)
command -v cargo-fuzz >/dev/null || cargo install -q --locked cargo-fuzz@0.13.2 || exit 1
export RUSTC_BOOTSTRAP=1
TMPDIR_BUILD=$(mktemp)
(cd fuzz && cargo fuzz build -O >"$TMPDIR_BUILD" 2>&1) || {
  echo "fuzz: build failed"; tail -20 "$TMPDIR_BUILD"; exit 1; }
work=$(mktemp -d); trap 'rm -rf "$work" "$TMPDIR_BUILD"' EXIT
failed=0
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "fuzz/corpus/$t"
  start=$(date +%s.%N)
  (cd fuzz && cargo fuzz run -O "$t" "$work/$t" "corpus/$t" -- "${limit[@]}" -max_len=4096 \
      -print_final_stats=1) >"$work/$t.log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
  secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN{printf "%.0f", e-s}')
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$t.log")
  if [ $rc -eq 0 ]; then r=ok; else r=crash; failed=1; grep -m5 -A10 "ERROR\|panicked" "$work/$t.log"; fi
  echo "fuzz $t runs=${runs:-0} secs=$secs exec_per_s=${rate:-0} result=$r"
done
exit $failed
