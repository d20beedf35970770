#!/bin/bash
# The issue-41 grid: code from /work/grid (one pinned commit), results into /work/main/results.
set -u
cd /work/grid
export PYTHONPATH=/work/grid JAX_PLATFORMS=cpu
OUT=/work/main/results/paper
TUNE=/work/main/results/paper-tune
NAR="nice -n 19 python -m nar.cli"
evaluate() {   # OOD at 16..128 and the invariance of every finished run
  for d in "$@"; do
    [ -f "$d/results.json" ] || continue
    python - "$d" <<'PY' || $NAR evaluate "$d" --size 16,32,64,128 --quiet
import json,sys; e=json.load(open(sys.argv[1]+'/evaluations.json'))
sys.exit(0 if all(str(s) in e for s in (16,32,128)) else 1)
PY
    python - "$d" <<'PY' || $NAR evaluate "$d" --invariance --quiet
import json,sys; e=json.load(open(sys.argv[1]+'/evaluations.json'))
sys.exit(0 if 'invariance' in e else 1)
PY
  done
}
choose() {   # the relic_lambda of the best mean validation score
  python - "$TUNE" "$1" <<'PY'
import glob,json,sys,statistics
best={}
for p in glob.glob(f'{sys.argv[1]}/{sys.argv[2]}/hint_relic@relic_lambda=*/seed*/results.json'):
    lam=p.split('relic_lambda=')[1].split('/')[0]
    best.setdefault(lam,[]).append(json.load(open(p))['best_val']['score'])
print(max(best, key=lambda k: statistics.mean(best[k])))
PY
}
for ALG in find_maximum_subarray_kadane binary_search insertion_sort quicksort; do
  $NAR sweep --protocol mid --algorithms $ALG --methods hint_relic --seeds 1 \
      --vary relic_lambda=0.1,1.0,10.0 --out $TUNE
  evaluate $TUNE/$ALG/hint_relic@*/seed*
  LAM=$(choose $ALG); echo "[grid] $ALG: relic_lambda $LAM chosen on validation"
  SEEDS=5; [ $ALG = quicksort ] && SEEDS=3
  for K in $(seq 1 $SEEDS); do
    $NAR sweep --protocol mid --algorithms $ALG --methods baseline,size_matched --seeds $K --out $OUT
    $NAR sweep --protocol mid --algorithms $ALG --methods hint_relic --seeds $K --set relic_lambda=$LAM --out $OUT
    evaluate $OUT/$ALG/*/seed*
  done
done
