#!/bin/bash
# Diagnostic (lease 3): why insertion_sort runs sit at 0% GPU. Three runs side by side for 200 s:
# twins_only with 2 sampling processes (as the sweep ran it), the same with GPU autotuning off,
# and the plain baseline; each run's progress output (steps, rate) comes back.
T0=$(date +%s)
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false NAR_CACHE=/tmp/narcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/.gpu/tfstub:$PWD
echo "installed at $(( $(date +%s) - T0 )) s" > $OUT/diag.txt
TR="python3 -m nar.cli train -a insertion_sort --steps 3000 --hidden 64 --batch-size 32 --eval-every 100"
timeout 200 $TR --method twins_only --set sampling_processes=2 --out /tmp/a > $OUT/a_twins.log 2>&1 &
XLA_FLAGS=--xla_gpu_autotune_level=0 timeout 200 $TR --method twins_only --set sampling_processes=2 --out /tmp/b > $OUT/b_twins_noautotune.log 2>&1 &
timeout 200 $TR --method baseline --out /tmp/c > $OUT/c_baseline.log 2>&1 &
while pgrep -f "nar.cli train" >/dev/null; do sleep 10
  echo "$(( $(date +%s) - T0 )) s $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader) load $(cut -d' ' -f1 /proc/loadavg) $(ls /tmp/narcache 2>/dev/null | wc -l) cache files" >> $OUT/diag.txt
  ps -eo pcpu,etimes,args --sort=-pcpu | grep -v grep | grep python | head -12 | cut -c1-150 >> $OUT/diag.txt
done
for d in a b c; do [ -f /tmp/$d/metrics.jsonl ] && cp /tmp/$d/metrics.jsonl $OUT/$d.metrics.jsonl; [ -f /tmp/$d/train.log ] && cp /tmp/$d/train.log $OUT/$d.train.log; done
echo "total $(( $(date +%s) - T0 )) s" >> $OUT/diag.txt
