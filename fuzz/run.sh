#!/usr/bin/env bash
# Runs each fuzz target for a given time (default 600 s) with its seed
# corpus, one after the other, and prints each target's executions and
# findings. Needs a nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`); CI stays on stable and never runs this.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      targets: formula csv model
#
# A crash, panic, timeout (10 s an input) or memory over 2 GiB is saved
# under fuzz/artifacts/TARGET/; turn each into a regression test.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(formula csv model)
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "== $t for ${secs}s"
  cargo +nightly fuzz run "$t" "corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 2>&1 |
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb|Done|ERROR|SUMMARY|panicked" || true
done
