"""The memory plan (`nar.memory`) against what runs take, and its measured tables.

    python -m experiments.memory_plan --measure            # docs/memory.md's table
    python -m experiments.memory_plan --measure --config '{"algorithm": "dfs", "hidden": 64}'
    python -m experiments.memory_plan --xla --config '{"algorithm": "bfs", "hidden": 64}'
    python -m experiments.memory_plan --trajectories       # nar.memory.TRAJECTORIES, measured

`--measure` trains each configuration for two steps in a fresh process and
compares the plan's estimate of what the run adds to the process (made where
`nar train` makes it: JAX and dm-clrs imported) with what it added: the peak
resident memory (VmHWM) minus the resident memory at that point. CPU only (on an
accelerator the device's peak is `memory_stats()['peak_bytes_in_use']`).
`--xla` compares the training step's estimate with XLA's own buffer plan of it
(`compile().memory_analysis()`), the figure the step's coefficients are fitted to.
Measurements, not tests: they take minutes, and peak memory depends on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

# Small enough for a CPU, large enough that the run's own memory is most of the
# peak; two steps, a validation and a small test each.
DEFAULT_CONFIGS = (
    {'algorithm': 'bfs', 'hidden': 16, 'batch_size': 4, 'train_sizes': [8]},
    {'algorithm': 'bfs', 'hidden': 128, 'batch_size': 32, 'train_sizes': [32]},
    {'algorithm': 'insertion_sort', 'hidden': 128, 'batch_size': 32, 'train_sizes': [32]},
    {'algorithm': 'dfs', 'hidden': 64, 'batch_size': 32, 'train_sizes': [32]},
    {'algorithm': 'floyd_warshall', 'hidden': 64, 'batch_size': 16, 'train_sizes': [24]},
    {'algorithm': 'bfs', 'hidden': 64, 'batch_size': 32, 'train_sizes': [32], 'remat': 'none'},
    {'algorithm': 'insertion_sort', 'method': 'hint_relic', 'hidden': 64, 'batch_size': 16,
     'train_sizes': [16]},
    {'algorithm': 'mst_prim', 'hidden': 128, 'batch_size': 32, 'train_sizes': [32]},
    {'algorithm': 'quicksort', 'hidden': 64, 'batch_size': 16, 'train_sizes': [32]},
    {'algorithm': 'kmp_matcher', 'hidden': 64, 'batch_size': 32, 'train_sizes': [24]},
    {'algorithm': 'insertion_sort,bfs', 'hidden': 64, 'batch_size': 32, 'train_sizes': [32]},
    {'algorithm': 'dfs', 'method': 'hint_relic', 'hidden': 64, 'batch_size': 8,
     'train_sizes': [16]},
    {'algorithm': 'find_maximum_subarray_kadane', 'method': 'twins_only', 'hidden': 128,
     'batch_size': 32, 'train_sizes': [32]},
)
# The rows that set RUNTIME_BYTES and TWINS_RUNTIME_BYTES (the others test the plan).
CALIBRATION = (0, 6)
# What every measured run shares: two steps, validation and test on few samples.
RUN = {'steps': 2, 'eval_every': 2, 'val_samples': 32, 'test_samples': 32, 'test_size': 16,
       'eval_batch_size': 32}


def _status(field: str) -> int:
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith(field + ':'):
        return int(line.split()[1]) * 1024
  raise KeyError(field)


def _config(overrides: dict, out: str):
  from nar.config import TrainConfig
  values = {**RUN, **overrides, 'out': out}
  if 'train_sizes' in values:
    values['train_sizes'] = tuple(values['train_sizes'])
  return TrainConfig(**values).validate()


def child(overrides: dict, out: str) -> dict:
  """In a fresh process: the plan where `nar train` makes it, then the run."""
  import jax
  from nar import memory
  from nar.train import train
  config = _config(overrides, out)
  jax.devices()
  before = _status('VmRSS')
  plan = memory.plan_training(config, memory.free_memory_bytes(), len(jax.devices()))
  train(config, progress=False)
  return {'config': overrides, 'estimate': plan.host, 'added': _status('VmHWM') - before,
          'plan': {'state': plan.state, 'step': plan.step, 'evaluation': plan.evaluation,
                   'data': plan.data, 'runtime': plan.runtime}}


def measure(configs) -> list[dict]:
  rows = []
  for overrides in configs:
    with tempfile.TemporaryDirectory() as tmp:
      overrides = {'cache_dir': os.path.join(tmp, 'cache'), **overrides}
      proc = subprocess.run([sys.executable, '-m', 'experiments.memory_plan', '--child',
                             json.dumps(overrides), '--out', os.path.join(tmp, 'run')],
                            capture_output=True, text=True)
    if proc.returncode != 0:
      raise RuntimeError(f'{overrides}: exit {proc.returncode}: {proc.stderr[-2000:]}')
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row['config'].pop('cache_dir', None)
    rows.append(row)
    print(_row(row), flush=True)
  return rows


def _row(row: dict) -> str:
  gib = 2 ** 30
  c = dict(row['config'])
  name = ', '.join(f'{k} {v}' for k, v in c.items())
  p = row['plan']
  return (f"| {name} | {p['state'] / gib:.3f} | {p['step'] / gib:.3f} | "
          f"{p['evaluation'] / gib:.3f} | {p['data'] / gib:.3f} | {row['estimate'] / gib:.2f} | "
          f"{row['added'] / gib:.2f} | {row['estimate'] / row['added']:.2f} |")


def xla(configs) -> None:
  """The training step's estimate against XLA's buffer plan of the compiled step."""
  import jax
  import numpy as np
  from nar import memory
  from nar.batching import Batch
  from nar.run_model import Placement, build_run_model, make_optimizer, make_update
  for overrides in configs:
    config = _config(overrides, tempfile.mkdtemp())
    model = build_run_model(config)
    optimizer = make_optimizer(config)
    placement = Placement.create(config.batch_size)
    task = model.tasks[0]
    update = make_update(task.loss_fn(model.net), optimizer, placement)
    state = model.state_template(optimizer)
    size = max(config.train_sizes)
    step = config.train_sizes.index(size)
    item = task.batch(step)
    compiled = update.lower(state['params'], state['opt_state'], jax.random.PRNGKey(0),
                            *task.place(item, placement)).compile()
    analysis = compiled.memory_analysis()
    params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(state['params']))
    batch = item if isinstance(item, Batch) else item[0]
    measured = analysis.temp_size_in_bytes - 2 * 4 * params     # less gradients and update
    estimate = config.batch_size * memory.sample_step_bytes(config, config.algorithm, size)
    print(f'{overrides}: shape (N, T) {batch.num_nodes, batch.num_steps} (planned '
          f'{memory.padded_shape(config.algorithm, size)}), step {measured / 2**20:.1f} MiB '
          f'(XLA), {estimate / 2**20:.1f} MiB (estimate), ratio {estimate / measured:.2f}',
          flush=True)


def trajectories(sizes, string_sizes) -> None:
  """Prints `nar.memory.TRAJECTORIES`: the probe's nodes and longest trajectory
  (string matchers at `string_sizes`: they train on sizes >= 14)."""
  from nar import data as data_lib
  from nar.catalogue import CLRS30_ALGORITHMS
  print('TRAJECTORIES: dict[str, tuple[tuple[int, int, int], ...]] = {')
  for algorithm in CLRS30_ALGORITHMS:
    rows = []
    for size in string_sizes if algorithm in data_lib.STRING_MATCHERS else sizes:
      samples = data_lib.make_train_samples(algorithm, data_lib.PROBE_SEED, 0,
                                            data_lib.PROBE_SAMPLES, (size,))
      rows.append((size, max(s.num_nodes for s in samples), max(s.length for s in samples)))
    print(f'    {algorithm!r}: {tuple(rows)!r},', flush=True)
  print('}')


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m experiments.memory_plan',
                                   description=__doc__.split('\n\n')[0])
  mode = parser.add_mutually_exclusive_group(required=True)
  mode.add_argument('--measure', action='store_true')
  mode.add_argument('--xla', action='store_true')
  mode.add_argument('--trajectories', action='store_true')
  mode.add_argument('--child', default=None, help=argparse.SUPPRESS)
  parser.add_argument('--config', action='append', default=None,
                      help='TrainConfig settings as JSON (default: the docs table\'s)')
  parser.add_argument('--sizes', default='4,8,16,32')
  parser.add_argument('--string-sizes', default='14,16,24,32')
  parser.add_argument('--out', default=None, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  configs = [json.loads(c) for c in args.config] if args.config else list(DEFAULT_CONFIGS)
  if args.child:
    print(json.dumps(child(json.loads(args.child), args.out)))
  elif args.measure:
    print('| configuration | parameters and optimizer GiB | step GiB | evaluation GiB | '
          'data GiB | estimate GiB | measured GiB | estimate / measured |')
    print('|---|---|---|---|---|---|---|---|')
    measure(configs)
  elif args.xla:
    xla(configs)
  else:
    trajectories([int(x) for x in args.sizes.split(',')],
                 [int(x) for x in args.string_sizes.split(',')])
  return 0


if __name__ == '__main__':
  sys.exit(main())
