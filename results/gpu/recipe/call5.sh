#!/bin/bash
# GPU recipe for the mid grid's remaining cells (one call of the run tool, ~9 minutes).
# PRESET=t16 (default): insertion_sort seeds 3-4 of both methods (Hint-ReLIC with 2 sampling
# processes), the sample-matched controls (baseline at batch 64) of insertion_sort and
# binary_search, seeds 0-4; PRESET=ablation: twins_only on insertion_sort and binary_search,
# seeds 0-4; PRESET=dfs: both methods, seeds 0-2; PRESET=quicksort: Hint-ReLIC and the
# control, seeds 0-2 (the protocol's count for quicksort). `nar sweep` starts one run per configuration
# first and its other seeds once it has compiled (they share its compilation cache). At most
# 6 runs at once (docs/devices.md: more starves the 16 host cores). Sweeps skip finished runs
# and resume unfinished ones, so the same script continues a stopped call.
# Before: results/gpu/recipe/prepare.sh here. Call: run(command="PRESET=t16 bash
# results/gpu/recipe/call5.sh", carry=[".whl", ".gpu"], timeout_s=600); unpack the returned
# mid.tgz at the repository root, then commit the finished runs' files (not checkpoints).
set -o pipefail
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false NAR_CACHE=/tmp/narcache
[ -n "$DRY" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/.gpu/tfstub:$PWD
# The XLA compilation cache of an earlier lease (same JAX and GPU), if carried: compiling a
# program takes 20-50 s on this machine when its cores are busy sampling (results/gpu/lease3).
[ -f .gpu/xla.tgz ] && mkdir -p $NAR_CACHE && tar xzf .gpu/xla.tgz -C $NAR_CACHE
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc;
  python3 -c "import jax, haiku, optax, clrs; print('jax', jax.__version__, 'optax', optax.__version__, jax.devices())"; git log --oneline -1; } > $OUT/env.txt 2>&1
cat $OUT/env.txt
STOP=${STOP:-480}
touch /tmp/t0marker
MID="python3 -m nar.cli sweep --protocol mid --out results/mid"
case "${PRESET:-t16}" in
  t16)   # the T = 16 cells: ~4 minutes a run with 6 at once
    $MID --seeds 5 --algorithms insertion_sort --methods baseline,hint_relic --set sampling_processes=2 --workers 3 > $OUT/sweep_hr.log 2>&1 &
    $MID --seeds 5 --algorithms insertion_sort binary_search --methods baseline --vary batch_size=64 --workers 3 > $OUT/sweep_ctl.log 2>&1 & ;;
  dfs)   # the paper's example, T = 48 at n = 16: both methods, 3 seeds, 6 runs at once
    $MID --seeds 3 --algorithms dfs --methods baseline,hint_relic --set sampling_processes=2 --workers 6 > $OUT/sweep_hr.log 2>&1 & ;;
  ablation)   # twins_only (supervised twins, no contrast) where kadane's showed the twins carry the gain
    $MID --seeds 5 --algorithms insertion_sort binary_search --methods twins_only --set sampling_processes=2 --workers 6 > $OUT/sweep_hr.log 2>&1 & ;;
  quicksort)   # T up to ~85 at n = 16: expect a call to stop part-way; the next resumes. The
    # baseline's 3 seeds and Hint-ReLIC's seed 0 are done (CPU); seed 1 resumes from its checkpoint
    # if the call carries results/mid/quicksort/hint_relic/seed1/checkpoints (git-ignored).
    $MID --seeds 3 --algorithms quicksort --methods hint_relic --set sampling_processes=2 --workers 3 > $OUT/sweep_hr.log 2>&1 &
    $MID --seeds 3 --algorithms quicksort --methods baseline --vary batch_size=64 --workers 3 > $OUT/sweep_ctl.log 2>&1 & ;;
  *) echo "unknown PRESET $PRESET"; exit 1 ;;
esac
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
  echo "$(el) s $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader) load $(cut -d' ' -f1 /proc/loadavg)" >> $OUT/progress.txt
done
pkill -TERM -f "nar.cli sweep"; pkill -TERM -f "nar.cli run"
for i in $(seq 40); do pgrep -f "nar.cli run" >/dev/null || break; sleep 1; done
echo "sweeps ended at $(el) s" | tee -a $OUT/progress.txt
evaluate_new
while pgrep -f "nar.cli evaluate" >/dev/null && [ $(el) -lt $(( STOP + 40 )) ]; do sleep 2; done
pkill -TERM -f "nar.cli evaluate"; sleep 2
grep -h "done\|FAILED\|stopped" $OUT/sweep_*.log
# Every run touched in this call: its files, its best checkpoint and newest step checkpoint
# (to resume elsewhere: checkpoints are git-ignored, so only this archive carries them).
: > /tmp/files
for r in $(find results/mid -name metrics.jsonl -newer /tmp/t0marker -printf '%h\n'); do
  ls -d $r/*.json $r/*.jsonl $r/train.log 2>/dev/null >> /tmp/files
  [ -d $r/checkpoints/best ] && echo $r/checkpoints/best >> /tmp/files
  ls -d $r/checkpoints/step-* 2>/dev/null | tail -1 >> /tmp/files
done
[ -s /tmp/files ] && tar czf $OUT/mid.tgz -T /tmp/files
# This call's compilation cache, for the next lease: copy it to .gpu/xla.tgz here.
[ -d $NAR_CACHE/xla ] && tar czf $OUT/xla.tgz -C $NAR_CACHE xla && du -sh $OUT/xla.tgz
ls -la $OUT; echo total $(el) s
