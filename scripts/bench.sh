#!/usr/bin/env bash
# Runs tapegrad's benchmark and, when a Python with numpy, torch and jax is
# at hand, the reference programs of the shared bench folder in the same
# run, then prints one table of ratios. Not part of CI.
#
#   scripts/bench.sh [WORKLOADS...]      default: W1 W2 W3 W4 Q1 P
#   REF=/path/to/shared/bench/ref PYTHON=python3 scripts/bench.sh W1 W4
set -euo pipefail
cd "$(dirname "$0")/.."
workloads=("$@")
[ ${#workloads[@]} -gt 0 ] || workloads=(W1 W2 W3 W4 Q1 P)
REF=${REF:-../shared/bench/ref}
PYTHON=${PYTHON:-python3}
out=$(mktemp)
cargo build --release -q -p tapebench
echo "tapegrad ${workloads[*]}" >&2
./target/release/tapebench "${workloads[@]}" | tee -a "$out" >&2
if [ -d "$REF" ] && "$PYTHON" -c 'import numpy, torch, jax' 2>/dev/null; then
  for w in "${workloads[@]}"; do
    case $w in
      W1|W2|W3|Q1) progs="guide_numpy.py torch_ref.py jax_ref.py" ;;
      W4) progs="torch_ref.py jax_ref.py" ;;
      P) progs="gemm_peak.py" ;;
      *) progs="" ;;
    esac
    for p in $progs; do
      echo "$p $w" >&2
      (cd "$REF" && "$PYTHON" "$p" "$w" 2>/dev/null) | tee -a "$out" >&2 || true
    done
  done
else
  echo "(no reference Python with numpy, torch and jax: tapegrad's figures only)" >&2
fi
"$PYTHON" - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
fig = {}
for r in rows:
    if r.get("value") is None or r.get("threads") == 1 and r["impl"] != "tapegrad":
        continue
    fig.setdefault((r["workload"], r["metric"]), {})[r["impl"]] = r["value"]
print(f"{'workload':<8} {'metric':<26} {'tapegrad':>12} {'numpy':>12} {'torch':>12} {'jax':>12}  ratios (tapegrad / other)")
for (w, m), v in sorted(fig.items()):
    t = v.get("tapegrad")
    others = {"numpy": v.get("numpy") or v.get("numpy+malloc-tuned"), "torch": v.get("torch-eager"), "jax": v.get("jax-jit") or v.get("jax-eager")}
    cells = " ".join(f"{(x if x is not None else float('nan')):>12.6g}" for x in [t] + list(others.values()))
    ratios = ", ".join(f"{k} {t / x:.3f}" for k, x in others.items() if t and x)
    print(f"{w:<8} {m:<26} {cells}  {ratios}")
PY
rm -f "$out"
