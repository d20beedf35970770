#!/bin/bash
# GPU call 1: environment, speed vs dm-clrs (quiet GPU), README run, mid protocol check.
set -o pipefail
T0=$(date +%s)
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false NAR_CACHE=/tmp/narcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/.gpu/tfstub:$PWD
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; python3 --version;
  python3 -c "import jax, haiku, optax, clrs, numpy; print('jax', jax.__version__, 'haiku', haiku.__version__, 'optax', optax.__version__, 'numpy', numpy.__version__, jax.devices())"; } 2>&1 | tee $OUT/env.txt
{ time python3 -m nar.cli train --algorithm bfs --steps 300 --hidden 64 --eval-every 100 --out /tmp/readme-bfs; } > $OUT/readme_run.txt 2>&1 || { tail -30 $OUT/readme_run.txt; exit 1; }
grep -E "OOD|real" $OUT/readme_run.txt
python3 -m experiments.benchmark_speed --algorithms insertion_sort dfs --batches 2 --repeats 3 --out $OUT/bench_fp32.json 2>&1 | grep -v Warning | tee $OUT/bench_fp32.log
python3 -m experiments.benchmark_speed --algorithms insertion_sort dfs --batches 2 --repeats 3 --precision bfloat16 --out $OUT/bench_bf16.json 2>&1 | grep -v Warning | tee $OUT/bench_bf16.log
LEFT=$(( 575 - ($(date +%s) - T0) ))
echo "check time: $LEFT s"
python3 -m nar.cli sweep --protocol mid --algorithms insertion_sort find_maximum_subarray_kadane binary_search quicksort dfs --methods baseline --seeds 1 --set steps=3000 --out results/mid-check --workers 5 > $OUT/check.log 2>&1 &
SWEEP=$!
( sleep $LEFT; pkill -TERM -f "nar.cli" ) &
KILLER=$!
wait $SWEEP
kill $KILLER 2>/dev/null
for i in $(seq 30); do pgrep -f "nar.cli run" >/dev/null || break; sleep 1; done
tail -3 results/mid-check/*/baseline/seed0/train.log
tar czf $OUT/mid-check.tgz results/mid-check
echo total $(( $(date +%s) - T0 )) s
