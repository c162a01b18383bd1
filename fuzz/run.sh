#!/usr/bin/env bash
# Runs each fuzz target for a given time (default 600 s) with its seed
# corpus, one after the other, and prints each target's executions and
# findings. Needs a nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`); CI stays on stable and never runs this.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      targets: formula csv model npz
#
# A crash, panic, timeout (10 s an input) or memory over 2 GiB is saved
# under fuzz/artifacts/TARGET/; turn each into a regression test. Each
# target's full output is in fuzz/artifacts/TARGET.log; a target that does
# not build or run says so, and the script exits non-zero.
set -uo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(formula csv model npz)
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "== $t for ${secs}s"
  cargo +nightly fuzz run "$t" "corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 > "artifacts/$t.log" 2>&1
  rc=$?
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs|ERROR|SUMMARY|panicked" "artifacts/$t.log"
  echo "   corpus: $(ls "corpus/$t" | wc -l) inputs; findings: $(ls "artifacts/$t" | wc -l)"
  if [ $rc -ne 0 ]; then
    echo "   $t exited with status $rc; the last lines of artifacts/$t.log:"
    tail -n 15 "artifacts/$t.log"
    status=1
  fi
done
exit $status
