#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a fixed time: 60 s, or 150 s for the
# ledger op, sync and HTTP body targets (which need 10 million runs), 3
# minutes for the task messages and 5 for the structure-aware ledger run,
# which signs every op. That is at least 2 million runs for every other
# target here. Prints one line per target with its executions, time and
# coverage, for docs/fuzzing.md. Needs cargo-fuzz (`cargo install
# cargo-fuzz --locked`). Targets: all, or those named.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(bundle envelope sealed op sync credit genesis task advert chunk config frames api_bodies)
fi
cargo fuzz build -s none
# Seeds: the valid encodings the smoke tests mutate, one directory a target.
seeds=$(mktemp -d)
(cd .. && P2PC_FUZZ_SEEDS="$seeds" cargo test -q -j2 --workspace --lib fuzzing >/dev/null)
for t in "${targets[@]}"; do
  secs=60
  case $t in
    op | sync | api_bodies) secs=150 ;;
    task) secs=180 ;;
    credit) secs=300 ;;
  esac
  log=$(mktemp)
  start=$(date +%s)
  if mkdir -p "corpus/$t" && cargo fuzz run -s none "$t" "corpus/$t" "$seeds/$t" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    result="no crash"
  else
    result="FAILED (see fuzz/artifacts/$t)"
  fi
  took=$(($(date +%s) - start))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
  echo "$t: $execs runs in ${took} s, coverage $cov edges, $result"
  rm -f "$log"
done
