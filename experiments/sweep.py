"""The sweep launcher: a grid of runs, resumable and sharded, and its commands.

    nar sweep --protocol cpu --algorithms insertion_sort dfs --methods baseline,hint_relic \
        --seeds 3 --out results/cpu
    nar report results/cpu

One run directory per (algorithm, method, seed): `<out>/<algorithm>/<method>/seed<k>`.
A finished run (its `results.json` exists) is skipped; an unfinished one resumes from
its newest intact checkpoint, and so does a finished one that the sweep now gives more
steps. A directory holding a run of other settings stops the sweep before anything
runs. `--shard i/N` takes every N-th run starting at i, so a job array splits a grid
across machines without coordination (see `slurm_array.sh`).

The protocols a sweep names are registered in `experiments.protocols`; the runs are
executed by `experiments.runner`; the report is `experiments.report`. Their public
names are also importable from here, as before the split.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Optional

from experiments import protocols
from experiments.protocols import (
    MULTI_TASK_JOIN, MULTI_TASK_SEPARATORS, PROTOCOLS, SCALED_BY_ALGORITHMS, TRIPLET_GMPNN,
    Protocol, algorithm_entries, get_protocol, register_protocol)
from experiments.report import report
from experiments.runner import _run_in_process, _run_parallel, compile_signature
from experiments.scores import collect
from experiments.stats import PairedTest, format_test, holm, paired_test, t_interval
from nar import registry
from nar.config import ConfigError, TrainConfig
from nar.catalogue import CLRS30_ALGORITHMS
from nar.overrides import parse_overrides

# Names that moved out of this module, importable from here as before.
__all__ = [
    'MULTI_TASK_JOIN', 'MULTI_TASK_SEPARATORS', 'PROTOCOLS', 'SCALED_BY_ALGORITHMS',
    'TRIPLET_GMPNN', 'Protocol', 'algorithm_entries', 'get_protocol', 'register_protocol',
    'report', 'collect', 'compile_signature', 'PairedTest', 'format_test', 'holm',
    'paired_test', 't_interval',
    # this module's own
    'variant_label', 'run_dir', 'variants', 'grid', 'parse_shard', 'make_config',
    'finished_steps', 'record_grid', 'sweep', 'add_commands', 'parse_vary',
]


def variant_label(method: str, variant: Optional[dict] = None) -> str:
  """'hint_relic', or 'hint_relic@relic_lambda=1.0,relic_temperature=0.5' for a
  variant of `--vary`: the run's directory and its column in the report."""
  if not variant:
    return method
  # Strings unquoted: the label is a directory name.
  return method + '@' + ','.join(f'{k}={v if isinstance(v, str) else json.dumps(v)}'
                                 for k, v in variant.items())


def run_dir(out: str, algorithm: str, method: str, seed: int,
            variant: Optional[dict] = None) -> str:
  return os.path.join(out, algorithm, variant_label(method, variant), f'seed{seed}')


def variants(vary: Optional[dict]) -> list[dict]:
  """Every combination of the `--vary` values ({} when nothing varies)."""
  if not vary:
    return [{}]
  keys = list(vary)
  return [dict(zip(keys, values)) for values in itertools.product(*(vary[k] for k in keys))]


def grid(algorithms, methods, seeds, vary: Optional[dict] = None):
  """[(algorithm, method, variant, seed)]; `seeds`: a count, or a function of the
  algorithm giving its count."""
  return [(a, m, v, s) for a in algorithms for m in methods for v in variants(vary)
          for s in range(seeds(a) if callable(seeds) else seeds)]


def parse_shard(text: Optional[str]) -> tuple[int, int]:
  if not text:
    return 0, 1
  try:
    i, n = (int(x) for x in text.split('/'))
  except ValueError:
    raise ConfigError(f"--shard must look like i/N (e.g. 0/4), got '{text}'") from None
  if n <= 0 or not 0 <= i < n:
    raise ConfigError(f'--shard {text}: need 0 <= i < N')
  return i, n


def make_config(protocol: str, algorithm: str, method: str, seed: int, out: str,
                overrides: dict, variant: Optional[dict] = None) -> TrainConfig:
  values = {**get_protocol(protocol).settings(algorithm), **overrides, **(variant or {})}
  return TrainConfig(algorithm=algorithm.replace(MULTI_TASK_JOIN, ','), method=method, seed=seed,
                     out=run_dir(out, algorithm, method, seed, variant), **values).validate()


def finished_steps(out: str) -> int:
  """Steps of the finished run in `out` (0: none). A sweep asking for more steps
  resumes and extends it."""
  try:
    with open(os.path.join(out, 'results.json')) as f:
      return int(json.load(f)['steps'])
  except FileNotFoundError:
    return 0
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ConfigError(f'{out}/results.json is unreadable ({e}); move it away to re-run') from e


def record_grid(out: str, protocol: str, algorithms, methods, seeds: int,
                overrides: Optional[dict] = None, vary: Optional[dict] = None) -> dict:
  """<out>/sweep.json: the grid this directory holds, for the report (which cells
  are complete). Several sweeps into one directory (the ablations of a grid, a
  part re-run with fewer seeds) add to it instead of replacing it."""
  from nar import storage
  from nar.config import RESUMABLE_DIFFERENCES
  path = os.path.join(out, 'sweep.json')
  # How a run is executed (prefetching, sampling processes, remat...) is no part of
  # the grid's definition: a part run elsewhere with other such values belongs to it.
  how = RESUMABLE_DIFFERENCES - {'steps'}
  overrides = {k: v for k, v in (overrides or {}).items() if k not in how}
  grid_def = {'protocol': protocol, 'algorithms': list(algorithms), 'methods': list(methods),
              'seeds': seeds, 'overrides': overrides, 'vary': vary or {}}
  try:
    os.makedirs(out, exist_ok=True)
  except OSError as e:
    raise storage.storage_error(out, e, 'create') from e
  # Read-modify-write under a lock: sweeps started at once into `out` all add theirs.
  with storage.locked(os.path.join(out, '.sweep.lock')):
    _merge_grid(path, protocol, grid_def)
    storage.atomic_write_json(path, grid_def)
  return grid_def


def _merge_grid(path: str, protocol: str, grid_def: dict) -> None:
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      old = json.load(f)
  except (OSError, ValueError):
    old = {}
  try:
    if not old:
      print(f'warning: {path} is not a sweep record; replaced')
      return
    if old.get('protocol') != protocol:
      print(f"warning: {path} recorded a grid of protocol {old.get('protocol')!r}; replaced by "
            f"this sweep's ({protocol!r})")
      return
    merged_def = dict(grid_def)
    # Sweeps with other --set values (e.g. an ablation at another temperature) are
    # parts of the grid too: the first one's settings stay, the others are listed.
    merged_def['overrides'] = old.get('overrides', {})
    others = [o for o in old.get('other_overrides', []) if isinstance(o, dict)]
    if grid_def['overrides'] != merged_def['overrides'] and grid_def['overrides'] not in others:
      others.append(grid_def['overrides'])
    if others:
      merged_def['other_overrides'] = others
    merged_def['algorithms'] = list(dict.fromkeys(old.get('algorithms', [])
                                                  + grid_def['algorithms']))
    merged_def['methods'] = list(dict.fromkeys(old.get('methods', []) + grid_def['methods']))
    merged_def['seeds'] = max(int(old.get('seeds', 0)), grid_def['seeds'])
    merged = {k: list(v) for k, v in (old.get('vary') or {}).items()}
    for key, values in grid_def['vary'].items():
      merged[key] = list(dict.fromkeys(merged.get(key, []) + list(values)))
    merged_def['vary'] = merged
    grid_def.update(merged_def)
  except (AttributeError, TypeError, ValueError):
    print(f'warning: {path} is not a sweep record; replaced')


def sweep(protocol: str, algorithms, methods, seeds: Optional[int], out: str, shard: str = None,
          workers: int = 1, overrides: Optional[dict] = None, progress: bool = True,
          vary: Optional[dict] = None, compile_warmup: bool = True) -> list:
  """Runs (or resumes) this shard of the grid; returns [(run dir, status)].

  With `workers` > 1 and `compile_warmup`, runs that compile the same programs
  (`compile_signature`) wait for the first of them to compile and share its
  persistent compilation cache (`_run_parallel`). `seeds` None: the protocol's
  count for each algorithm (`Protocol.seeds_for`)."""
  from nar.config import config_conflicts, load_config_file
  algorithms = algorithm_entries(algorithms)
  for entry in algorithms:
    for a in entry.split(MULTI_TASK_JOIN):
      if a not in CLRS30_ALGORITHMS:
        raise ConfigError(f"unknown algorithm '{a}'; choose from `nar algorithms` (a "
                          f"multi-task run joins names with '{MULTI_TASK_JOIN}' or ',': "
                          'bfs+dfs)')
  for m in methods:
    if m not in registry.methods():
      raise ConfigError(f"unknown method '{m}'; choose one of: {', '.join(registry.methods())}")
  if not isinstance(workers, int) or workers < 1:
    raise ConfigError(f'--workers must be a positive integer (runs at a time), got {workers}')
  i, n = parse_shard(shard)
  from nar.methods import check_runnable
  from nar.preflight import check_sizes
  from nar.train import check_memory
  for a, m, v, _ in grid(algorithms, methods, 1, vary):  # e.g. Hint-ReLIC without a rule
    cell = make_config(protocol, a, m, 0, out, overrides or {}, v)
    check_sizes(cell)
    check_runnable(cell)
    check_memory(cell)          # a cell that cannot fit: refused before any run starts
  todo, report, conflicts = [], [], []
  # None: each algorithm's count of the protocol; sweep.json records the protocol's default.
  chosen = get_protocol(protocol)
  seeds_of, recorded_seeds = (chosen.seeds_for, chosen.seeds) if seeds is None else (seeds, seeds)
  for k, (a, m, v, s) in enumerate(grid(algorithms, methods, seeds_of, vary)):
    if k % n != i:
      continue
    cfg = make_config(protocol, a, m, s, out, overrides or {}, v)
    saved_config = os.path.join(cfg.out, 'config.json')
    done_steps = finished_steps(cfg.out)
    differ = (config_conflicts(load_config_file(saved_config), cfg)
              if os.path.exists(saved_config) else [])
    if done_steps > cfg.steps:         # a longer run is not this grid's run either
      differ.append(f'steps: finished with {done_steps}, now {cfg.steps}')
    if differ:
      conflicts.append(f"{cfg.out} ({'; '.join(differ)})")
      continue
    if done_steps == cfg.steps:
      report.append((cfg.out, 'already finished'))
      continue
    todo.append(cfg)        # new, unfinished, or finished with fewer steps (extended)
  if conflicts:
    # Refused before anything runs: skipping them would report another experiment's
    # numbers under this grid's name.
    raise ConfigError(f'{len(conflicts)} run director{"y holds" if len(conflicts) == 1 else "ies hold"} '
                      'a run with other settings than this sweep asks for: '
                      + ', '.join(conflicts[:3]) + (' ...' if len(conflicts) > 3 else '')
                      + '; pass the same --protocol/--set values, or another --out')
  record_grid(out, protocol, algorithms, methods, recorded_seeds, overrides, vary)
  print(f'[sweep] {len(todo)} run(s) to do, {len(report)} already finished (shard {i}/{n})')
  if workers > 1:
    report.extend(_run_parallel(todo, workers, compile_warmup, progress))
  else:
    for config in todo:
      report.append(_run_in_process(config, progress))
  return report


# --------------------------------------------------------------------------- CLI
def add_commands(sub) -> None:
  p = sub.add_parser('sweep', help='run a grid of algorithms x methods x seeds (resumable)',
                     epilog='protocols: ' + '; '.join(f'{p.name}: {p.description}'
                                                      for p in protocols.PROTOCOLS.values()))
  p.add_argument('--protocol', default='cpu', help=f"one of {', '.join(protocols.PROTOCOLS)}")
  p.add_argument('--algorithms', nargs='+', required=True,
                 help="algorithm names, each its own run; 'a+b+c' (or 'a,b,c', as in nar "
                      "train) is one multi-task run of the three")
  p.add_argument('--methods', default='baseline,hint_relic')
  p.add_argument('--seeds', type=int, default=None,
                 help="default: the protocol's ("
                      + ', '.join(f'{p.name} {p.seeds}' + ''.join(
                          f', {a} {n}' for a, n in p.algorithm_seeds.items())
                                  for p in protocols.PROTOCOLS.values()) + ')')
  p.add_argument('--out', required=True)
  p.add_argument('--shard', default=None, help='i/N: this machine runs runs i, i+N, ...')
  p.add_argument('--workers', type=int, default=1,
                 help='runs at a time, each in its own process logging to <run dir>/train.log')
  p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE')
  p.add_argument('--vary', action='append', default=[], metavar='KEY=V1,V2,...',
                 help='also sweep over these values of a setting (repeat for a product), '
                      'e.g. --vary relic_lambda=0.1,1.0; each value is its own report column')
  p.add_argument('--no-compile-warmup', dest='compile_warmup', action='store_false',
                 help='with --workers > 1, start every run at once instead of letting the '
                      'first run of each configuration compile (and fill the compilation '
                      'cache) before its other seeds start')
  p.set_defaults(fn=_cmd_sweep)
  p = sub.add_parser('report', help='markdown table + PNG plots from results.json files')
  p.add_argument('root')
  p.add_argument('--out', default=None)
  p.add_argument('--equivalent-code', action='store_true',
                 help='the code versions of paired runs are known to compute the same: do not '
                      'mark their pairs (backends are marked whatever this says)')
  p.set_defaults(fn=_cmd_report)


def parse_vary(items: list[str]) -> dict:
  """['relic_lambda=0.1,1.0', ...] -> {'relic_lambda': [0.1, 1.0], ...} (checked keys)."""
  vary = {}
  for item in items:
    key, sep, values = item.partition('=')
    if not sep or not values:
      raise ConfigError(f'--vary expects KEY=V1,V2,..., got {item!r}')
    vary[key] = [parse_overrides([f'{key}={v}'])[key] for v in values.split(',')]
  return vary


def _cmd_sweep(args) -> int:
  overrides = parse_overrides(args.set)
  if args.seeds is not None and args.seeds <= 0:
    raise ConfigError('--seeds must be a positive integer')
  done = sweep(args.protocol, algorithm_entries(args.algorithms), args.methods.split(','),
               args.seeds, args.out, args.shard, args.workers, overrides,
               vary=parse_vary(args.vary), compile_warmup=args.compile_warmup)
  for path, status in done:
    print(f'{path}: {status}')
  return 1 if any(status.startswith('FAILED') for _, status in done) else 0


def _cmd_report(args) -> int:
  print(report(args.root, args.out, equivalent_code=args.equivalent_code))
  return 0
