#!/bin/bash
# GPU call 4: mid grid, Hint-ReLIC (default rollout twins) on kadane and binary_search,
# seeds 0-2, sampling in 2 processes each; the insertion_sort sample-matched control
# (baseline, batch 64) seeds 0-2; then OOD-vs-size evaluations of every finished run.
set -o pipefail
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false NAR_CACHE=/tmp/narcache
[ -n "$DRY" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/.gpu/tfstub:$PWD
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc;
  python3 -c "import jax, haiku, optax, clrs; print('jax', jax.__version__, 'optax', optax.__version__, jax.devices())"; git log --oneline -1; } > $OUT/env.txt 2>&1
cat $OUT/env.txt
STOP=${STOP:-450}
touch /tmp/t0marker
RUNS="$(for a in find_maximum_subarray_kadane binary_search; do for s in 0 1 2; do echo results/mid/$a/hint_relic/seed$s; done; done)
$(for s in 0 1 2; do echo results/mid/insertion_sort/baseline@batch_size=64/seed$s; done)"
python3 -m nar.cli sweep --protocol mid --algorithms find_maximum_subarray_kadane binary_search --methods hint_relic --seeds 3 --set sampling_processes=2 --out results/mid --workers 6 > $OUT/sweep_hr.log 2>&1 &
[ -n "$NOCTL" ] || python3 -m nar.cli sweep --protocol mid --algorithms insertion_sort --methods baseline --vary batch_size=64 --seeds 3 --out results/mid --workers 3 > $OUT/sweep_ctl.log 2>&1 &
declare -A EVALD
evaluate_new() {
  for r in $(find results/mid -name results.json -newer /tmp/t0marker -printf '%h\n' 2>/dev/null); do
    [ -n "${EVALD[$r]}" ] && continue; EVALD[$r]=1
    echo "$(el) s: evaluate $r" >> $OUT/progress.txt
    python3 -m nar.cli evaluate $r --size 16,32,128 --quiet >> $OUT/evaluate.log 2>&1 &
  done
}
while pgrep -f "nar.cli sweep" >/dev/null && [ $(el) -lt $STOP ]; do
  sleep 10; evaluate_new
  { echo "$(el) s $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader) load $(cut -d' ' -f1 /proc/loadavg)"; } >> $OUT/progress.txt
done
pkill -TERM -f "nar.cli sweep"; pkill -TERM -f "nar.cli run"
for i in $(seq 40); do pgrep -f "nar.cli run" >/dev/null || break; sleep 1; done
echo "sweeps ended at $(el) s" | tee -a $OUT/progress.txt
evaluate_new
while pgrep -f "nar.cli evaluate" >/dev/null && [ $(el) -lt $(( STOP + 30 )) ]; do sleep 2; done
pkill -TERM -f "nar.cli evaluate"; sleep 2
grep -h "done\|FAILED\|stopped" $OUT/sweep_*.log
# Run files, each run's best checkpoint and its newest step checkpoint (to resume elsewhere).
for a in find_maximum_subarray_kadane binary_search insertion_sort; do
  : > /tmp/files_$a
  for r in $(echo "$RUNS" | grep "/$a/"); do
    [ -d $r ] || continue
    ls -d $r/*.json $r/*.jsonl $r/train.log 2>/dev/null >> /tmp/files_$a
    [ -d $r/checkpoints/best ] && echo $r/checkpoints/best >> /tmp/files_$a
    ls -d $r/checkpoints/step-* 2>/dev/null | tail -1 >> /tmp/files_$a
  done
  tar czf $OUT/$a.tgz -T /tmp/files_$a
done
ls -la $OUT; echo total $(el) s
