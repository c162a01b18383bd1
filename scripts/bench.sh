#!/usr/bin/env bash
# Runs tapegrad's benchmark and, when a Python with numpy, torch and jax is
# at hand, the reference programs of the shared bench folder in the same
# run, then prints one table of ratios. Not part of CI.
#
#   scripts/bench.sh [WORKLOADS...]      default: W1 W2 W4 Q1 W3 P
#   REF=/path/to/shared/bench/ref PYTHON=python3 scripts/bench.sh W1 W4
#
# The programs run workload by workload (tapegrad and the references of one
# workload back to back), because this machine's speed moves in phases of
# minutes and a ratio is only fair between figures taken in the same phase.
# W3 is judged against numpy's GEMM peak P, so tapegrad's W3 runs last in
# its group and numpy's P first in the next: the two figures of that ratio
# are taken one after the other.
#
# The references run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed
# from their environment, so that OpenBLAS picks its own kernel for this
# CPU: a machine's environment may pin an older one (Haswell on a CPU with
# AVX-512 halves numpy's P), and a ratio is only fair against numpy at its
# best. KEEP_OPENBLAS_ENV=1 keeps them.
set -euo pipefail
cd "$(dirname "$0")/.."
workloads=("$@")
[ ${#workloads[@]} -gt 0 ] || workloads=(W1 W2 W4 Q1 W3 P)
REF=${REF:-../shared/bench/ref}
PYTHON=${PYTHON:-python3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
cargo build --release -q -p tapebench
refs=0
if [ -d "$REF" ] && "$PYTHON" -c 'import numpy, torch, jax' 2>/dev/null; then
  refs=1
else
  echo "(no reference Python with numpy, torch and jax: tapegrad's figures only)" >&2
fi
run_tapegrad() {
  echo "tapegrad $1" >&2
  ./target/release/tapebench "$1" | tee -a "$out" >&2
}
run_refs() {
  [ "$refs" = 1 ] || return 0
  local progs
  case $1 in
    W1|W2|W3|Q1) progs="guide_numpy.py torch_ref.py jax_ref.py" ;;
    W4) progs="torch_ref.py jax_ref.py" ;;
    P) progs="gemm_peak.py" ;;
    *) progs="" ;;
  esac
  for p in $progs; do
    # W2's JAX figure includes a whole epoch compiled into one lax.scan.
    local args=("$1")
    [ "$p $1" = "jax_ref.py W2" ] && args+=(W2scan)
    echo "$p ${args[*]}" >&2
    local unset=(-u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE)
    [ "${KEEP_OPENBLAS_ENV:-}" = 1 ] && unset=()
    (cd "$REF" && env "${unset[@]}" "$PYTHON" "$p" "${args[@]}" 2>/dev/null) | tee -a "$out" >&2 || true
  done
}
for w in "${workloads[@]}"; do
  case $w in
    W3) run_refs "$w"; run_tapegrad "$w" ;;
    *) run_tapegrad "$w"; run_refs "$w" ;;
  esac
done
"$PYTHON" - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
fig = {}
for r in rows:
    if r.get("value") is None or r.get("threads") == 1 and not r["impl"].startswith("tapegrad"):
        continue
    fig.setdefault((r["workload"], r["metric"]), {})[r["impl"]] = r["value"]
# tapegrad: the replayed step (fit's default); tapegrad-eager: every step
# recorded anew. The ratios are the replayed figure over each other one.
print(f"{'workload':<8} {'metric':<26} {'tapegrad':>12} {'eager':>12} {'numpy':>12} {'torch':>12} {'jax':>12} {'jax-scan':>12}  ratios (tapegrad / other)")
for (w, m), v in sorted(fig.items()):
    t = v.get("tapegrad")
    others = {"eager": v.get("tapegrad-eager"), "numpy": v.get("numpy") or v.get("numpy+malloc-tuned"), "torch": v.get("torch-eager"), "jax": v.get("jax-jit") or v.get("jax-eager"), "jax-scan": v.get("jax-jit-scan")}
    cells = " ".join(f"{(x if x is not None else float('nan')):>12.6g}" for x in [t] + list(others.values()))
    ratios = ", ".join(f"{k} {t / x:.3f}" for k, x in others.items() if t and x)
    print(f"{w:<8} {m:<26} {cells}  {ratios}")
w3 = fig.get(("W3", "gflops"), {}).get("tapegrad")
p = fig.get(("P", "gflops_f32"), {}).get("numpy")
if w3 and p:
    print(f"W3 / numpy's P (f32): {w3:.2f} / {p:.2f} = {w3 / p:.3f} (target: at least 0.85)")
PY
