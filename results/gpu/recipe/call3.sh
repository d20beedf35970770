#!/bin/bash
# GPU call 2: the mid grid (baseline vs Hint-ReLIC one-step), seeds 0-2, then OOD-vs-size evaluations.
set -o pipefail
T0=$(date +%s)
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false NAR_CACHE=/tmp/narcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/.gpu/tfstub:$PWD
ALGS="binary_search find_maximum_subarray_kadane"
python3 -m nar.cli sweep --protocol mid --algorithms $ALGS --methods baseline,hint_relic --seeds 3 --set relic_twin=step --set relic_beta=0 --out results/mid --workers 6 > $OUT/sweep.log 2>&1 &
SWEEP=$!
( sleep $(( 370 - ($(date +%s) - T0) )); pkill -TERM -f "nar.cli" ) &
KILLER=$!
while kill -0 $SWEEP 2>/dev/null; do sleep 10; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader >> $OUT/gpu_util.txt; uptime >> $OUT/gpu_util.txt; done
kill $KILLER 2>/dev/null
for i in $(seq 30); do pgrep -f "nar.cli run" >/dev/null || break; sleep 1; done
echo "sweep ended at $(( $(date +%s) - T0 )) s"
for a in $ALGS; do
  RUNS=$(dirname $(ls results/mid/$a/*/seed*/results.json 2>/dev/null) 2>/dev/null)
  [ -n "$RUNS" ] && python3 -m nar.cli evaluate $RUNS --size 16,32,128 --quiet > $OUT/eval_$a.json 2> /tmp/eval_$a.err &
done
( sleep $(( 495 - ($(date +%s) - T0) )); pkill -TERM -f "nar.cli evaluate" ) &
while pgrep -f "nar.cli evaluate" >/dev/null; do sleep 2; [ $(( $(date +%s) - T0 )) -gt 500 ] && break; done
tail -2 /tmp/eval_*.err
find results/mid -name results.json | sort
find results/mid -name results.json -printf '%h\n' | tar czf $OUT/mid.tgz --exclude=checkpoints -T -
ls -la $OUT; echo total $(( $(date +%s) - T0 )) s
