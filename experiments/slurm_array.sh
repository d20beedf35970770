#!/bin/bash
# Example: split a sweep over a SLURM job array, one shard per task, no coordination.
# Every task runs runs i, i+N, i+2N, ... of the grid; finished runs are skipped and
# unfinished ones resume from their checkpoint, so resubmitting the array is safe.
#SBATCH --job-name=nar-sweep
#SBATCH --array=0-15
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --time=24:00:00
#SBATCH --output=logs/%x-%A_%a.out
set -euo pipefail
N=${SLURM_ARRAY_TASK_COUNT:-16}
nar sweep --protocol paper \
  --algorithms $(nar algorithms | tail -n +2 | awk '{print $1}') \
  --methods baseline,hint_relic --seeds 10 \
  --out results/paper --shard "${SLURM_ARRAY_TASK_ID}/${N}"
