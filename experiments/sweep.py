"""Experiment grids: named protocols, a resumable sharded sweep launcher, and a report.

    nar sweep --protocol cpu --algorithms insertion_sort dfs --methods baseline,hint_relic \
        --seeds 3 --out results/cpu
    nar report results/cpu

One run directory per (algorithm, method, seed): `<out>/<algorithm>/<method>/seed<k>`.
A finished run (its `results.json` exists) is skipped; an unfinished one resumes from
its newest intact checkpoint, and so does a finished one that the sweep now gives more
steps. A directory holding a run of other settings stops the sweep before anything
runs. `--shard i/N` takes every N-th run starting at i, so a job array splits a grid
across machines without coordination (see `slurm_array.sh`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import sys
import time
from typing import Any, Mapping, Optional

from nar import registry
from nar.config import ConfigError, TrainConfig, compile_cache_dir
from nar.catalogue import CLRS30_ALGORITHMS, FAMILIES
from nar.evaluations import algorithm_score, read_evaluations, read_invariance
from nar.overrides import parse_overrides

@dataclasses.dataclass(frozen=True)
class Protocol:
  """A named experimental protocol: the TrainConfig settings every run of a grid
  shares, how many seeds a grid takes by default, and per-algorithm exceptions.
  A run's settings are, last wins: TrainConfig defaults, `overrides`,
  `algorithm_overrides[algorithm]`, the sweep's `--set`, its `--vary` value.
  Changing a registered protocol changes the configuration of its finished runs:
  `nar sweep` would then refuse their directories (other settings) instead of
  recognising them, so add a protocol rather than edit one that has results."""
  name: str
  overrides: Mapping[str, Any]
  seeds: int
  algorithm_overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
  description: str = ''
  # Algorithms whose runs are too long for `seeds` of them: their own count.
  algorithm_seeds: Mapping[str, int] = dataclasses.field(default_factory=dict)

  def seeds_for(self, algorithm: str) -> int:
    """How many seeds the protocol gives `algorithm` (a multi-task entry: the
    fewest of its members', the costly member's run being part of it)."""
    return min(self.algorithm_seeds.get(a, self.seeds)
               for a in algorithm.split(MULTI_TASK_JOIN))

  def settings(self, algorithm: str) -> dict:
    """The protocol's TrainConfig settings for one algorithm, or for a multi-task
    entry ('a+b+c', `MULTI_TASK_JOIN`): its algorithms' common settings, with
    `steps` and `eval_every` the largest of theirs times the number of
    algorithms (each algorithm trains at least its single-task run's steps and
    is validated as often); other settings that differ are refused."""
    members = algorithm.split(MULTI_TASK_JOIN)
    if len(members) == 1:
      return {**self.overrides, **self.algorithm_overrides.get(algorithm, {})}
    each = [self.settings(a) for a in members]
    defaults = TrainConfig()
    merged = {}
    for key in sorted(set().union(*each)):
      values = [e.get(key, getattr(defaults, key)) for e in each]
      if key in SCALED_BY_ALGORITHMS:
        merged[key] = len(members) * max(values)
      elif all(v == values[0] for v in values):
        merged[key] = values[0]
      else:
        raise ConfigError(f'protocol {self.name!r} sets {key} differently for the algorithms of '
                          f'{algorithm} ({", ".join(f"{a}: {v}" for a, v in zip(members, values))}); '
                          f'choose one with --set {key}=VALUE')
    return merged


# A sweep's multi-task entry joins algorithm names with '+' ('insertion_sort+bfs+dfs':
# one run training the three, in a directory of that name, as `nar train` names it).
# ',' (`nar train`'s separator) is accepted too and read as '+' (`algorithm_entries`);
# names separated by spaces are separate runs.
MULTI_TASK_JOIN = '+'
MULTI_TASK_SEPARATORS = (MULTI_TASK_JOIN, ',')


def algorithm_entries(items) -> list:
  """The grid's algorithm entries (`--algorithms`), each item one run: a single
  name, or a multi-task run whose names are joined by '+' or ',' (both written
  as '+': 'insertion_sort,bfs' is the run 'insertion_sort+bfs')."""
  out = []
  for item in items:
    for sep in MULTI_TASK_SEPARATORS:
      item = item.replace(sep, MULTI_TASK_JOIN)
    out.append(item)
  return out
# Counted in steps of the whole multi-task run, one algorithm per step.
SCALED_BY_ALGORITHMS = ('steps', 'eval_every')


PROTOCOLS: dict[str, Protocol] = {}   # name -> Protocol, in registration order


def register_protocol(protocol: Protocol) -> Protocol:
  """Adds `protocol` to PROTOCOLS (`nar sweep --protocol NAME`); its settings
  are checked against TrainConfig now, not when a sweep first uses them."""
  if not protocol.name or protocol.name in PROTOCOLS:
    raise ConfigError(f'protocol name {protocol.name!r} is empty or already registered')
  fields = {f.name for f in dataclasses.fields(TrainConfig)}
  fixed = {'algorithm', 'method', 'seed', 'out'}   # set per run by the sweep
  for where, values in [('overrides', protocol.overrides),
                        *((f'algorithm_overrides[{a!r}]', v)
                          for a, v in protocol.algorithm_overrides.items())]:
    bad = sorted(set(values) - (fields - fixed))
    if bad:
      raise ConfigError(f'protocol {protocol.name!r}: {where} sets {", ".join(bad)}, '
                        'which a protocol cannot set')
  for where, named in (('algorithm_overrides', protocol.algorithm_overrides),
                       ('algorithm_seeds', protocol.algorithm_seeds)):
    unknown = sorted(set(named) - set(CLRS30_ALGORITHMS))
    if unknown:
      raise ConfigError(f'protocol {protocol.name!r}: {where} names unknown algorithms '
                        f'{", ".join(unknown)}')
  for where, n in [('seeds', protocol.seeds),
                   *((f'algorithm_seeds[{a!r}]', n) for a, n in protocol.algorithm_seeds.items())]:
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
      raise ConfigError(f'protocol {protocol.name!r}: {where} must be a positive integer')
  PROTOCOLS[protocol.name] = protocol
  return protocol


def get_protocol(name: str) -> Protocol:
  if name not in PROTOCOLS:
    raise ConfigError(f"unknown protocol '{name}'; choose one of: {', '.join(PROTOCOLS)}")
  return PROTOCOLS[name]


# The committed results (results/) were run with these settings: keep them as they are.
register_protocol(Protocol(
    name='paper',
    overrides=dict(hidden=128, batch_size=32, steps=10_000, eval_every=50, test_size=64),
    seeds=10,
    description='The training budget and model size of Ibarz et al. 2022 (10,000 steps, '
                'hidden 128, batch 32, 10 seeds); meant for accelerators.'))
register_protocol(Protocol(
    name='cpu',
    overrides=dict(hidden=32, batch_size=16, steps=500, eval_every=100, test_size=64),
    seeds=3,
    # At 500 steps the cpu baseline stays under 0.9 validation on dfs (70.1, 3 seeds)
    # and naive_string_matcher (76.5); at 2,000 steps it reaches 0.92 and 0.96
    # (results/protocol-check, seed 0), about 13 minutes a run.
    algorithm_overrides={'dfs': dict(steps=2000, eval_every=250),
                         'naive_string_matcher': dict(steps=2000, eval_every=250)},
    description='Sized for a 2-core CPU: a baseline run in 2-10 minutes, and the baseline '
                'at >= 0.9 in-distribution validation (results/cpu, results/README.md); '
                'dfs and naive_string_matcher need 2,000 steps for that.'))

register_protocol(Protocol(
    name='mid',
    overrides=dict(hidden=64, batch_size=32, steps=3000, eval_every=100, test_size=64),
    seeds=5,
    # 5 seeds where a run takes under 15 minutes, 3 otherwise (issue 15): a quicksort
    # baseline run trains for ~30 minutes on a 2-core CPU (results/mid/README.md).
    algorithm_seeds={'quicksort': 3},
    description='Between cpu and paper: hidden 64, the reference batch of 32, validation '
                'every 100 steps, test at n = 64; the step budget chosen by the protocol '
                'check in results/mid/README.md ("Protocol check"); quicksort 3 seeds.'))

# Triplet-GMPNN OOD micro-F1 (Ibarz et al. 2022, 10 seeds, 10,000 steps), in %.
TRIPLET_GMPNN = {
    'activity_selector': 95.18, 'articulation_points': 88.32, 'bellman_ford': 97.39,
    'bfs': 99.73, 'binary_search': 77.58, 'bridges': 93.99, 'bubble_sort': 67.68,
    'dag_shortest_paths': 98.19, 'dfs': 47.79, 'dijkstra': 96.05,
    'find_maximum_subarray_kadane': 76.36, 'floyd_warshall': 48.52, 'graham_scan': 93.62,
    'heapsort': 31.04, 'insertion_sort': 78.14, 'jarvis_march': 91.01, 'kmp_matcher': 19.51,
    'lcs_length': 80.51, 'matrix_chain_order': 91.68, 'minimum': 97.78, 'mst_kruskal': 89.80,
    'mst_prim': 86.39, 'naive_string_matcher': 78.67, 'optimal_bst': 73.77,
    'quickselect': 0.47, 'quicksort': 64.64, 'segments_intersect': 97.64,
    'strongly_connected_components': 43.43, 'task_scheduling': 87.25, 'topological_sort': 87.27,
}


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


class _TeeToLog:
  """A text stream that also appends to a run's train.log: a progress bar's
  in-place refreshes (carriage returns) go to the log at most every 30 s, as the
  bar itself refreshes when its output is a file."""
  LOG_EVERY_S = 30.0

  def __init__(self, stream, log):
    self.stream, self.log, self._last_refresh = stream, log, -self.LOG_EVERY_S

  def write(self, text: str) -> int:
    self.stream.write(text)
    logged = text
    if '\r' in text and '\n' not in text:
      now = time.monotonic()
      if now - self._last_refresh < self.LOG_EVERY_S:
        return len(text)
      self._last_refresh = now
      logged = text.strip('\r') + '\n'
    self.log.write(logged)
    self.log.flush()
    return len(text)

  def flush(self) -> None:
    self.stream.flush()
    self.log.flush()

  def isatty(self) -> bool:
    return self.stream.isatty()

  def __getattr__(self, name):
    return getattr(self.stream, name)


def _run_in_process(config: TrainConfig, progress: bool):
  """One run in this process, its output also appended to <run dir>/train.log."""
  import contextlib
  from nar.train import RunInUseError, train
  os.makedirs(config.out, exist_ok=True)
  with open(os.path.join(config.out, 'train.log'), 'a') as log, \
       contextlib.redirect_stdout(_TeeToLog(sys.stdout, log)), \
       contextlib.redirect_stderr(_TeeToLog(sys.stderr, log)):
    try:
      return config.out, f"done, OOD {train(config, progress=progress)['test_score']:.4f}"
    except RunInUseError:     # another sweep into the same directory runs it now
      return config.out, 'skipped (in use by another process)'


def _run_in_subprocess(config: TrainConfig):
  """One run as its own process (`nar run`), output to <run dir>/train.log: a run
  that crashes (even by a signal) is reported and the sweep goes on."""
  import subprocess
  import tempfile
  os.makedirs(config.out, exist_ok=True)
  with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
    json.dump(config.to_json(), f)
  try:
    with open(os.path.join(config.out, 'train.log'), 'a') as log:
      code = subprocess.run([sys.executable, '-m', 'nar.cli', 'run', f.name],
                            stdout=log, stderr=subprocess.STDOUT).returncode
  finally:
    os.remove(f.name)
  if code != 0:
    return config.out, f'FAILED (exit code {code}; see train.log)'
  try:
    with open(os.path.join(config.out, 'results.json')) as f:
      return config.out, f"done, OOD {json.load(f)['test_score']:.4f}"
  except (OSError, ValueError, KeyError, TypeError) as e:
    return config.out, f'FAILED (results.json unreadable: {e.__class__.__name__}; see train.log)'


# Settings that change neither the programs a run compiles nor their shapes.
_NOT_COMPILED = ('seed', 'out', 'steps', 'prefetch', 'log_every', 'sampling_processes')


def compile_signature(config: TrainConfig) -> str:
  """Runs with equal signatures compile the same XLA programs (they differ only in
  seed or in how they are executed), so JAX's persistent compilation cache
  (`nar.train.enable_compilation_cache`) serves the second one what the first compiled."""
  d = config.to_json()
  for key in _NOT_COMPILED:
    d.pop(key, None)
  return json.dumps(d, sort_keys=True)


def _last_validation(out: str) -> int:
  """Step of the newest validation record in <out>/metrics.jsonl (-1: none yet)."""
  from nar import storage
  try:
    records, _ = storage.read_jsonl(os.path.join(out, 'metrics.jsonl'))  # a torn line is left out
  except OSError:
    return -1
  steps = [r.get('step') for r in records if r.get('kind') == 'val']
  return max((int(x) for x in steps if isinstance(x, (int, float))), default=-1)


_POLL_S = 2.0        # how often a waiting group's leader is looked at


def _run_parallel(todo: list, workers: int, compile_warmup: bool = True,
                  progress: bool = True) -> list:
  """Runs `todo` (TrainConfigs) `workers` at a time, each in its own process.

  Compilation is the slow part of a short run's start (~10 s a program on a CPU;
  on a GPU machine whose host cores are busy sampling, 20-50 s, and 5 concurrent
  compiles of one program left an H100 idle for 7 minutes: results/gpu/lease3).
  So, with `compile_warmup`, only the first run of each compile signature starts at
  once; the others of its group start when it has logged its first validation
  (every training shape and the validation program are compiled by then, and in the
  cache) or has ended. Runs of other signatures fill the free workers meanwhile.

  Args:
    progress: a bar over the runs (finished, running, waiting for a compilation; ETA).
  Returns:
    [(run dir, status)] in the order the runs ended.
  """
  from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
  bar = None
  if progress:
    from tqdm import tqdm
    bar = tqdm(total=len(todo), desc='sweep', unit='run', smoothing=0)
  say = bar.write if bar is not None else print
  groups: dict[str, list] = {}
  for config in todo:
    shares_cache = compile_cache_dir(config.resolved_cache_dir()) is not None
    key = compile_signature(config) if compile_warmup and shares_cache else config.out
    groups.setdefault(key, []).append(config)
  waiting = {}             # leader's future -> (leader, its last validation step, followers)
  report = []
  with ThreadPoolExecutor(workers) as pool:
    futures = set()
    for leader, *followers in groups.values():
      future = pool.submit(_run_in_subprocess, leader)
      futures.add(future)
      if followers:
        waiting[future] = (leader, _last_validation(leader.out), followers)
    try:
      while futures:
        finished, futures = wait(futures, timeout=_POLL_S, return_when=FIRST_COMPLETED)
        for future in finished:
          path, status = future.result()
          report.append((path, status))
          say(f'[sweep] {path}: {status}')
        for future, (leader, seen, followers) in list(waiting.items()):
          if future.done() or _last_validation(leader.out) > seen:
            del waiting[future]
            futures |= {pool.submit(_run_in_subprocess, c) for c in followers}
        if bar is not None:
          bar.update(len(finished))
          bar.set_postfix(running=sum(f.running() for f in futures),
                          waiting_compile=sum(len(w[2]) for w in waiting.values()), refresh=True)
    except KeyboardInterrupt as e:
      # Ctrl-C: the runs going on get it too (same process group) and checkpoint;
      # none of the waiting ones starts.
      for future in futures:
        future.cancel()
      if not getattr(e, 'saved', True):
        e.saved = ('the runs going on save a checkpoint and stop (see their train.log); '
                   'run the same sweep again to resume')
      raise
    finally:
      if bar is not None:
        bar.close()
  return report


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


# ------------------------------------------------------------------------ report
def collect(root: str) -> list[dict]:
  rows = []
  for dirpath, _, files in os.walk(root):
    if 'results.json' in files:
      r = _read_results(os.path.join(dirpath, 'results.json'))
      r['_dir'] = dirpath
      saved_method = r['method']
      r['method'] = method_as_trained(r)
      # The report's column: the method, or its --vary variant (the directory name).
      parent = os.path.basename(os.path.dirname(dirpath))
      r['_label'] = (r['method'] + parent[len(saved_method):]
                     if parent.startswith(saved_method + '@') else r['method'])
      rows.extend(_per_algorithm_rows(r, os.path.join(dirpath, 'results.json')))
  return rows


MULTI_TASK_SUFFIX = ' (multi-task)'


def method_as_trained(r: dict) -> str:
  """The method a results.json's run trained, in today's names: its saved
  configuration migrated (`nar.config.migrate`: a version-1 `hint_relic` run of
  supervised rollout twins is `hint_relic_supervised`)."""
  from nar.config import migrate
  config = r.get('config')
  if not isinstance(config, dict):
    return r['method']
  try:
    return migrate({**config, 'method': r['method']})['method']
  except ConfigError:
    return r['method']


def provenance(r: dict) -> tuple:
  """(backend, code commit or None, tree modified or None) of a results.json."""
  v = r.get('versions') if isinstance(r.get('versions'), dict) else {}
  code = v.get('code') if isinstance(v.get('code'), dict) else {}
  return v.get('backend'), code.get('commit'), code.get('modified')


def _per_algorithm_rows(r: dict, path: str) -> list[dict]:
  """A single-task run is one row; a multi-task run (`per_algorithm` in its
  results) one row per algorithm, in a column of its own ('<method> (multi-task)',
  so it sits beside, and is paired by seed with, the single-task runs). Its
  validation score is the algorithm's at the step selected on the sum over the
  run's algorithms; its minutes are the whole run's."""
  per = r.get('per_algorithm')
  if per is None:
    return [r]
  if not isinstance(per, dict) or not per:
    raise ConfigError(f'{path}: per_algorithm is not a table of algorithms; move it away or fix it')
  rows = []
  for name, entry in per.items():
    score = entry.get('test_score') if isinstance(entry, dict) else None
    if isinstance(score, bool) or not isinstance(score, (int, float)):
      raise ConfigError(f'{path}: per_algorithm {name!r} has no valid test_score; move it away '
                        'or fix it')
    row = {k: v for k, v in r.items() if k not in ('per_algorithm', 'best_val')}
    row.update(algorithm=name, test_score=score, _multi_task=True,
               _label=r['_label'] + MULTI_TASK_SUFFIX)
    best = entry.get('best_val')
    if isinstance(best, dict) and isinstance(best.get('score'), (int, float)):
      row['best_val'] = best
    rows.append(row)
  return rows


def _read_results(path: str) -> dict:
  """A run's results.json; ConfigError naming the file when it is not one."""
  try:
    with open(path, 'rb') as f:
      r = json.loads(f.read().decode('utf-8'))
  except (OSError, ValueError) as e:
    raise ConfigError(f'{path} is unreadable ({e.__class__.__name__}); move it away or '
                      'fix it') from e
  if not isinstance(r, dict):
    raise ConfigError(f'{path} is not the results of a run (not a JSON object); move it away '
                      'or fix it')
  need = {'algorithm': str, 'method': str, 'test_score': (int, float)}
  bad = [k for k, t in need.items() if not isinstance(r.get(k), t) or isinstance(r.get(k), bool)]
  seed = r.get('seed')
  if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
    bad.append('seed')
  if bad:
    raise ConfigError(f'{path} is not the results of a run (no valid {", ".join(bad)}); move '
                      'it away or fix it')
  best = r.get('best_val')
  if not (isinstance(best, dict) and isinstance(best.get('score'), (int, float))):
    r.pop('best_val', None)
  if not isinstance(r.get('timings'), dict) or not all(
      isinstance(v, (int, float)) or v is None for v in r['timings'].values()):
    r.pop('timings', None)
  return r


def _mean_std(xs):
  m = sum(xs) / len(xs)
  sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
  return m, sd


@dataclasses.dataclass
class _Scores:
  """What the report's tables read, per (algorithm, column): a column is a
  method or a --vary variant of one (`_label`); scores in %."""
  methods: list            # the columns, baseline first
  algos: list
  by_seed: dict            # (algorithm, column) -> {seed: OOD score}
  by: dict                 # (algorithm, column) -> [OOD score per seed]
  mean: dict               # (algorithm, column) -> mean OOD score
  complete: dict           # (algorithm, column) -> has the seeds the grid asked for
  val_by: dict             # (algorithm, column) -> [best validation score per run]
  minutes_by: dict         # (algorithm, column) -> [minutes per run]
  expected_seeds: Optional[int]
  by_size: dict = dataclasses.field(default_factory=dict)
  # (algorithm, column, test size) -> {seed: score}: the OOD test (results.json) and
  # every `nar evaluate --size` kept in the run's evaluations.json
  provenance: dict = dataclasses.field(default_factory=dict)
  # (algorithm, column) -> {seed: `provenance(results)`}
  invariance: dict = dataclasses.field(default_factory=dict)
  # (algorithm, column) -> {seed: invariance summary (`nar evaluate --invariance`)}
  tests: dict = dataclasses.field(default_factory=dict)
  # (algorithm, column, reference, size or None) -> `PairedTest` (None: the OOD test)
  test_sizes: dict = dataclasses.field(default_factory=dict)
  # algorithm -> its OOD test size (the most common in its results)
  equivalent_code: bool = False
  # told that the code versions of paired runs compute the same (`--equivalent-code`)

  @property
  def sizes_by_algorithm(self) -> dict:
    """{algorithm: sorted test sizes} for the algorithms tested at more than one size."""
    sizes = {}
    for a, _, n in self.by_size:
      sizes.setdefault(a, set()).add(n)
    return {a: sorted(sizes[a]) for a in self.algos if len(sizes.get(a, ())) > 1}

  @property
  def others(self) -> list:
    """The columns compared with the baseline (difference columns), if there is one."""
    return [m for m in self.methods if m != 'baseline'] if 'baseline' in self.methods else []

  @property
  def comparison_pairs(self) -> list:
    """`_comparison_pairs` of this report's columns."""
    return _comparison_pairs(self.methods)


def _expected(recorded: int, protocol: Optional[Protocol], algorithm: str) -> int:
  """Seeds that complete an algorithm's cell: the grid's count, at most the
  protocol's own count for the algorithm (its exceptions for long runs)."""
  return recorded if protocol is None else min(recorded, protocol.seeds_for(algorithm))


def _scores(root: str, rows: list[dict]) -> _Scores:
  expected_seeds, protocol = None, None
  meta_path = os.path.join(root, 'sweep.json')
  if os.path.exists(meta_path):
    try:
      with open(meta_path) as f:
        record = json.load(f)
      expected_seeds = record['seeds']
      protocol = PROTOCOLS.get(record.get('protocol'))
      if isinstance(expected_seeds, bool) or not isinstance(expected_seeds, int):
        raise TypeError(expected_seeds)
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise ConfigError(f'{meta_path} is not a sweep record ({e.__class__.__name__}); move it '
                        'away or fix it') from e
  methods = sorted({r['_label'] for r in rows}, key=lambda m: (m != 'baseline', m))
  by_seed, val_by, minutes_by, prov, inv = {}, {}, {}, {}, {}
  for r in rows:
    key = (r['algorithm'], r['_label'])
    by_seed.setdefault(key, {})[r.get('seed')] = 100 * r['test_score']
    prov.setdefault(key, {})[r.get('seed')] = provenance(r)
    measured = (read_invariance(r['_dir']) or {}).get('per_algorithm', {}).get(r['algorithm'])
    if isinstance(measured, dict):
      inv.setdefault(key, {})[r.get('seed')] = measured
    if isinstance(r.get('best_val'), dict):
      val_by.setdefault(key, []).append(100 * r['best_val']['score'])
    t = r.get('timings') or {}
    spent = sum(t.get(k) or 0.0 for k in ('compile_s', 'train_s', 'eval_s', 'test_s'))
    if spent:
      minutes_by.setdefault(key, []).append(spent / 60)
  by = {key: list(scores.values()) for key, scores in by_seed.items()}
  by_size = {}
  for r in rows:
    multi = bool(r.get('_multi_task'))
    sizes = {n: algorithm_score(e, r['algorithm'], multi)
             for n, e in read_evaluations(r['_dir']).items()}
    sizes = {n: x for n, x in sizes.items() if x is not None}
    if isinstance(r.get('test_size'), int):
      sizes[r['test_size']] = r['test_score']
    for n, score in sizes.items():
      by_size.setdefault((r['algorithm'], r['_label'], n), {})[r.get('seed')] = 100 * score
  return _Scores(
      by_size=by_size, provenance=prov, invariance=inv, methods=methods, algos=sorted({r['algorithm'] for r in rows}), by_seed=by_seed, by=by,
      mean={key: _mean_std(xs)[0] for key, xs in by.items()},
      complete={key: expected_seeds is None or len(xs) >= _expected(expected_seeds, protocol, key[0])
                for key, xs in by.items()},
      val_by=val_by, minutes_by=minutes_by, expected_seeds=expected_seeds)


# Two-sided 95% quantiles of Student's t, by degrees of freedom (1-30); beyond, the normal's.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t_interval(xs) -> Optional[tuple]:
  """The 95% t-interval of the mean of `xs` (None with fewer than 2 values)."""
  if len(xs) < 2:
    return None
  mu, sd = _mean_std(xs)
  t = _T975[len(xs) - 2] if len(xs) - 1 <= len(_T975) else 1.960
  half = t * sd / math.sqrt(len(xs))
  return mu - half, mu + half


@dataclasses.dataclass
class PairedTest:
  """A paired comparison of two columns over the seeds both have.

  Attributes:
    diffs: the per-seed differences (mine - reference), in points.
    ci: their mean's 95% t-interval (None with one seed).
    p: the two-sided paired t-test's p-value (None with one seed).
    holm_p: `p` adjusted by Holm's method over the report's family of tests.
    mixed: marks of what differs between paired runs: 'backend' (e.g. GPU
      against CPU), 'code' (another commit, a modified tree, or not recorded).
  """
  diffs: list
  ci: Optional[tuple]
  p: Optional[float]
  holm_p: Optional[float] = None
  mixed: tuple = ()

  @property
  def mean(self) -> float:
    return sum(self.diffs) / len(self.diffs)


def paired_test(mine: dict, base: dict, prov_mine: Optional[dict] = None,
                prov_base: Optional[dict] = None,
                equivalent_code: bool = False) -> Optional[PairedTest]:
  """The `PairedTest` of {seed: score} `mine` against `base` (None: no shared seed).

  prov_mine / prov_base: {seed: `provenance(results)`}; a pair whose backends
  differ is marked 'backend', one whose code versions differ or are not recorded
  'code' (unless `equivalent_code`: told they compute the same)."""
  from scipy import stats
  seeds = sorted(set(mine) & set(base), key=str)
  if not seeds:
    return None
  d = [mine[k] - base[k] for k in seeds]
  p = None
  if len(d) > 1:
    mu, sd = _mean_std(d)
    if sd > 0:
      p = float(2 * stats.t.sf(abs(mu) / (sd / math.sqrt(len(d))), len(d) - 1))
    else:
      p = 0.0 if mu != 0 else 1.0
  mixed = []
  if prov_mine is not None and prov_base is not None:
    pairs = [(prov_mine.get(k, (None,) * 3), prov_base.get(k, (None,) * 3)) for k in seeds]
    if any(a[0] != b[0] for a, b in pairs):
      mixed.append('backend')
    if not equivalent_code and any(a[1] is None or b[1] is None or a[1] != b[1] or a[2] or b[2]
                                   for a, b in pairs):
      mixed.append('code')
  return PairedTest(d, t_interval(d), p, mixed=tuple(mixed))


def holm(tests: list) -> None:
  """Sets each test's `holm_p`: Holm's step-down adjustment over `tests` (the
  family), which controls the chance of any false claim among them at the level
  the adjusted p-values are read at. Tests without a p-value are not in it."""
  family = sorted((t for t in tests if t.p is not None), key=lambda t: t.p)
  running = 0.0
  for i, t in enumerate(family):
    running = max(running, min(1.0, (len(family) - i) * t.p))
    t.holm_p = running


# The level at which the report calls an adjusted difference a claim.
ALPHA = 0.05
MIXED_MARKS = {'backend': '†', 'code': '‡'}


def _p_value(p: float) -> str:
  """'=0.032', or '<1e-4' below it (float noise in near-constant differences)."""
  return '<1e-4' if p < 1e-4 else f'={p:.2g}'


def format_test(test: Optional[PairedTest], with_wins: bool) -> str:
  """A report cell: mean difference, 95% t-interval, seeds ahead, p-value, its
  Holm-adjusted value ('claim' when under ALPHA) and the mixed-provenance marks."""
  if test is None:
    return 'n/a'
  text = f'{test.mean:+.2f}' + (f' [{test.ci[0]:+.2f}, {test.ci[1]:+.2f}]' if test.ci
                                else ' [no interval: 1 seed]')
  if with_wins:
    text += f' (ahead on {sum(x > 0 for x in test.diffs)}/{len(test.diffs)})'
  if test.p is not None:
    text += f' p{_p_value(test.p)}'
    if test.holm_p is not None:
      text += f', Holm{_p_value(test.holm_p)}' + (' **claim**' if test.holm_p < ALPHA else '')
  return text + ''.join(MIXED_MARKS[m] for m in test.mixed)


def _test_key(s: '_Scores', algorithm: str, mine: str, ref: str, size: Optional[int] = None):
  """The key of a comparison in `_Scores.tests`; the OOD test's own size is None."""
  return (algorithm, mine, ref, None if size == s.test_sizes.get(algorithm) else size)


def collect_tests(s: '_Scores') -> dict:
  """Every paired comparison the report shows (the OOD table's, the controls' and
  ablations', and every test size's), keyed by `_test_key`, Holm-adjusted as one
  family."""
  tests = {}
  compared = [(m, 'baseline') for m in s.others] + s.comparison_pairs
  for a in s.algos:
    for m, c in compared:
      for n in [None] + s.sizes_by_algorithm.get(a, []):
        key = _test_key(s, a, m, c, n)
        if key in tests:
          continue
        if key[3] is None:
          mine, base = s.by_seed.get((a, m), {}), s.by_seed.get((a, c), {})
        else:
          mine, base = s.by_size.get((a, m, n), {}), s.by_size.get((a, c, n), {})
        tests[key] = paired_test(mine, base, s.provenance.get((a, m)), s.provenance.get((a, c)),
                                 s.equivalent_code)
  holm([t for t in tests.values() if t is not None])
  return tests


def _paired_difference(s: _Scores, algorithm: str, method: str) -> str:
  """The OOD table's difference cell of `method` against the baseline."""
  return format_test(s.tests.get(_test_key(s, algorithm, method, 'baseline')), with_wins=True)


def _family_note(s: _Scores) -> list[str]:
  """What the p-values are adjusted over, and what the marks mean."""
  counted = [t for t in s.tests.values() if t is not None and t.p is not None]
  claims = sum(t.holm_p < ALPHA for t in counted)
  lines = ['', f'Multiple comparisons: the family is every paired comparison this report shows '
           f'with at least two seeds ({len(counted)} intervals, all tables and test sizes); '
           f'p is the two-sided paired t-test, "Holm" its Holm-adjusted value over that '
           f'family; **claim**: adjusted p < {ALPHA} ({claims} of {len(counted)}). An '
           'unadjusted interval that excludes zero is not a claim.']
  marks = {m for t in s.tests.values() if t is not None for m in t.mixed}
  if 'backend' in marks:
    lines.append('† pairs runs of different backends (e.g. GPU against CPU): the difference '
                 'includes the backend\'s.')
  if 'code' in marks:
    lines.append('‡ pairs runs whose code versions differ or were not recorded (results.json '
                 '`versions.code`, recorded since schema 2); pass `--equivalent-code` when '
                 'the differences are known not to change the computation.')
  return lines


def _invariance_table(s: _Scores) -> list[str]:
  """Invariance across twins (`nar evaluate RUN --invariance`) beside the OOD
  score, per algorithm and column: whether more invariance goes with more
  generalisation."""
  if not s.invariance:
    return []
  lines = ['', 'Invariance of the next step across twins (`nar evaluate RUN --invariance`: '
           'validation originals and their twins, valid step pairs, one step from the same '
           'state), mean over the seeds measured (count): retrieval = fraction of anchors '
           'whose most similar candidate on the other side is the true partner (cosine of the '
           'raw representations; critic: in the critics\' space, Hint-ReLIC only); agreement = '
           'same next-hint prediction on the original nodes; similarity of partners / '
           'non-partners. OOD: mean over the same seeds.', '',
           '| algorithm | column | seeds | retrieval | critic retrieval | agreement | '
           'partner sim | other sim | OOD |', '|' + '---|' * 9]

  def mean_of(rows, key):
    xs = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return f'{sum(xs) / len(xs):.3f}' if xs else 'n/a'
  for a in s.algos:
    for m in s.methods:
      measured = s.invariance.get((a, m), {})
      if not measured:
        continue
      rows = list(measured.values())
      ood = [s.by_seed[(a, m)][k] for k in measured if k in s.by_seed.get((a, m), {})]
      lines.append(f'| {a} | {m} | {len(rows)} | ' + ' | '.join(
          mean_of(rows, k) for k in ('retrieval', 'retrieval_critic', 'agreement',
                                     'similarity_partner', 'similarity_other'))
          + (f' | {sum(ood) / len(ood):.2f} |' if ood else ' | n/a |'))
  return lines


def _ood_table(root: str, s: _Scores) -> list[str]:
  """Title, and the OOD test score per algorithm and column, with the paper's
  Triplet-GMPNN and the paired differences to the baseline."""
  lines = [f'# Results under `{root}`', '',
           'OOD test score (micro-F1 family, `clrs.evaluate`) in %, mean +- std over seeds '
           '(count in brackets). Triplet-GMPNN: Ibarz et al. 2022, 10 seeds, 10,000 steps. '
           + ('A cell with fewer seeds than the grid asked for (or than the protocol gives the '
              'algorithm, where fewer: its long runs) is marked *incomplete* and '
              'left out of the family means.' if s.expected_seeds else '')
           + ' Differences are paired by seed (over the seeds both methods have): mean of the '
           'per-seed differences, its 95% t-interval over seeds in brackets (an interval that '
           'holds zero shows no difference), and on how many seeds the method is ahead.', '']
  head = '| algorithm | ' + ' | '.join(s.methods) + ' | Triplet-GMPNN |'
  if s.others:
    head += ' ' + ' | '.join(f'{m} - baseline' for m in s.others) + ' |'
  lines += [head, '|' + '---|' * (head.count('|') - 1)]
  for a in s.algos:
    cells = []
    for m in s.methods:
      xs = s.by.get((a, m), [])
      if not xs:
        cells.append('missing')
        continue
      mu, sd = _mean_std(xs)
      cells.append(f'{mu:.2f} +- {sd:.2f} ({len(xs)})'
                   + ('' if s.complete[(a, m)] else ' *incomplete*'))
    line = f'| {a} | ' + ' | '.join(cells) + f" | {TRIPLET_GMPNN.get(a, float('nan')):.2f} |"
    if s.others:
      line += ' ' + ' | '.join(_paired_difference(s, a, m) for m in s.others) + ' |'
    lines.append(line)
  return lines


def _comparison_pairs(methods: list) -> list:
  """(method, reference) column pairs beyond "- baseline": each method against each
  variant of the baseline (a `--vary` column such as the sample-matched control
  `baseline@batch_size=64`), and each registered method against its ablations (a
  method registered with the same target and fixed settings, e.g. `hint_relic`
  against `twins_only`): whether a gain survives the control, and which part of
  the method it comes from."""
  entries = registry.methods()

  def is_control(column: str) -> bool:
    entry = entries.get(column.split('@')[0])
    return column.startswith('baseline@') or (entry is not None and entry.control)
  controls = [m for m in methods if is_control(m)]
  compared = [m for m in methods if m != 'baseline' and m not in controls]
  pairs = [(m, c) for m in compared for c in controls]
  for m in methods:
    full = entries.get(m)
    if full is None or full.overrides:
      continue
    pairs += [(m, a) for a in methods
              if a != m and a in entries and entries[a].overrides
              and entries[a].target == full.target and not is_control(a)]
  return pairs


def _control_table(s: _Scores) -> list[str]:
  """The paired differences of `_comparison_pairs`, paired by seed as against the
  baseline. Empty without such columns."""
  pairs = s.comparison_pairs
  if not pairs:
    return []
  lines = ['', 'Against the variants of the baseline (controls) and against ablations of a '
           'method, paired by seed as above; algorithms where no reference column has a run '
           'are left out:', '']
  head = '| algorithm | ' + ' | '.join(f'{m} - {c}' for m, c in pairs) + ' |'
  lines += [head, '|' + '---|' * (head.count('|') - 1)]
  references = sorted({c for _, c in pairs})
  for a in s.algos:
    if not any(s.by_seed.get((a, c)) for c in references):
      continue
    lines.append(f'| {a} | ' + ' | '.join(
        format_test(s.tests.get(_test_key(s, a, m, c)), with_wins=True)
        for m, c in pairs) + ' |')
  return lines


def _validation_table(s: _Scores) -> list[str]:
  """In distribution: best validation score (n = 16, model selection) and cost.
  The last column is model selection across columns (e.g. the values of a --vary
  sweep): the one with the highest mean validation score, never the test score."""
  lines = ['', 'Best in-distribution validation score in % (mean +- std) and minutes per run '
           '(compile + train + validation + test, mean); the last column names the '
           'method with the highest mean validation score:', '',
           '| algorithm | ' + ' | '.join(f'{m} val | {m} min' for m in s.methods)
           + ' | highest validation |',
           '|' + '---|' * (2 * len(s.methods) + 2)]
  for a in s.algos:
    cells = []
    for m in s.methods:
      v, t = s.val_by.get((a, m)), s.minutes_by.get((a, m))
      cells.append(f'{_mean_std(v)[0]:.1f} +- {_mean_std(v)[1]:.1f}' if v else 'n/a')
      cells.append(f'{sum(t) / len(t):.1f}' if t else 'n/a')
    scored = [(_mean_std(s.val_by[(a, m)])[0], m) for m in s.methods if s.val_by.get((a, m))]
    cells.append(max(scored)[1] if scored else 'n/a')
    lines.append(f'| {a} | ' + ' | '.join(cells) + ' |')
  return lines


def _size_table(s: _Scores) -> list[str]:
  """OOD score against test size, where runs were evaluated at more than one
  size (`nar evaluate RUN --size 16,32,128`): generalisation as a curve."""
  sizes_of = s.sizes_by_algorithm
  if not sizes_of:
    return []
  head = '| algorithm | n | ' + ' | '.join(s.methods) + ' |'
  compared = [(m, 'baseline') for m in s.others] + s.comparison_pairs
  if compared:
    head += ' ' + ' | '.join(f'{m} - {c}' for m, c in compared) + ' |'
  lines = ['', 'OOD score (%) against test size: mean +- std over seeds (count); n = the test '
           'split for the protocol\'s test size, otherwise `nar evaluate --size` of the best '
           'checkpoint (the test split\'s seed, kept in each run\'s evaluations.json). '
           'Differences paired by seed with their 95% t-interval.', '',
           head, '|' + '---|' * (head.count('|') - 1)]
  for a, sizes in sizes_of.items():
    for n in sizes:
      cells = []
      for m in s.methods:
        xs = list(s.by_size.get((a, m, n), {}).values())
        cells.append(f'{_mean_std(xs)[0]:.2f} +- {_mean_std(xs)[1]:.2f} ({len(xs)})'
                     if xs else 'n/a')
      line = f'| {a} | {n} | ' + ' | '.join(cells) + ' |'
      if compared:
        diffs = [format_test(s.tests.get(_test_key(s, a, m, c, n)), with_wins=False)
                 for m, c in compared]
        line += ' ' + ' | '.join(diffs) + ' |'
      lines.append(line)
  return lines


def _family_table(s: _Scores) -> list[str]:
  """Per family: mean over algorithms whose cells are complete. A partial mean
  names its algorithms: means over different sets are not comparable."""
  def complete(a, m):
    return s.complete.get((a, m), False)

  family_head = '| family | ' + ' | '.join(s.methods) + ' | Triplet-GMPNN |'
  if s.others:
    family_head += ' ' + ' | '.join(f'{m} - baseline' for m in s.others) + ' |'
  lines = ['', 'Per CLRS family: mean over the algorithms each cell names (complete cells '
           'only); Triplet-GMPNN over the whole family.'
           + (' A difference column compares a method with the baseline over the algorithms '
              'both have complete, so the two means are over the same set.' if s.others else ''),
           '', family_head, '|' + '---|' * (family_head.count('|') - 1)]
  for fam, members in FAMILIES.items():
    present = [a for a in members if a in s.algos]
    if not present:
      continue
    cells = []
    for m in s.methods:
      used = [a for a in present if (a, m) in s.by and complete(a, m)]
      vals = [s.mean[(a, m)] for a in used]
      which = 'all' if len(used) == len(members) else ', '.join(used)
      cells.append(f'{sum(vals) / len(vals):.2f} ({len(used)}/{len(members)}: {which})'
                   if vals else 'n/a')
    ref = sum(TRIPLET_GMPNN[a] for a in members) / len(members)
    line = f'| {fam} | ' + ' | '.join(cells) + f' | {ref:.2f} |'
    if s.others:
      diffs = []
      for m in s.others:
        shared = [a for a in present if complete(a, m) and complete(a, 'baseline')]
        if not shared:
          diffs.append('n/a')
          continue
        d = [s.mean[(a, m)] - s.mean[(a, 'baseline')] for a in shared]
        ahead = sum(x > 0 for x in d)
        diffs.append(f'{sum(d) / len(d):+.2f} (ahead on {ahead}/{len(shared)}: '
                     f'{", ".join(shared)})')
      line += ' ' + ' | '.join(diffs) + ' |'
    lines.append(line)
  return lines


def report(root: str, out_md: Optional[str] = None, plots: bool = True,
           equivalent_code: bool = False) -> str:
  """Markdown tables (and PNG plots) from every results.json under `root`:
  OOD test scores with paired differences (p-values Holm-adjusted over the
  report's comparisons), in-distribution validation and cost, scores against
  test size, invariance, per-family means. `equivalent_code`: the code versions
  of paired runs are known to compute the same (no 'code' marks)."""
  rows = collect(root)
  if not rows:
    raise ConfigError(f'no results.json under {root}')
  s = _scores(root, rows)
  s.equivalent_code = equivalent_code
  s.test_sizes = {a: max(set(ns), key=ns.count) for a in s.algos
                  for ns in [[r['test_size'] for r in rows if r['algorithm'] == a
                              and isinstance(r.get('test_size'), int)]] if ns}
  s.tests = collect_tests(s)
  text = '\n'.join(_ood_table(root, s) + _control_table(s) + _family_note(s)
                   + _validation_table(s) + _size_table(s) + _invariance_table(s)
                   + _family_table(s)) + '\n'
  out_md = out_md or os.path.join(root, 'report.md')
  if plots:     # beside the markdown, which links them by name
    plot_dir = os.path.dirname(os.path.abspath(out_md))
    os.makedirs(plot_dir, exist_ok=True)
    text += _plots(plot_dir, rows, s.methods, s.algos, s.by)
    text += _size_plot(plot_dir, s)
  from nar import storage
  storage.atomic_write(out_md, text)
  return text


def _plots(plot_dir, rows, methods, algos, by) -> str:
  import matplotlib
  from nar import storage
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  # Per algorithm only the methods it has, side by side (a sparse grid, e.g. ablations
  # on one algorithm, leaves no gaps); a method keeps its colour everywhere; each
  # seed is a dot on its bar, the paper's Triplet-GMPNN a black line across the group.
  colour = {m: f'C{k % 10}' for k, m in enumerate(methods)}
  bars = sum(1 for a in algos for m in methods if by.get((a, m)))
  fig, ax = plt.subplots(figsize=(min(24, max(6, 0.45 * bars + 1.2 * len(algos) + 2.5)), 4.2))
  labelled = set()
  for i, a in enumerate(algos):
    present = [m for m in methods if by.get((a, m))]
    width = 0.8 / max(len(present), 1)
    for k, m in enumerate(present):
      x = i - 0.4 + width * (k + 0.5)
      mu, sd = _mean_std(by[(a, m)])
      ax.bar(x, mu, width, yerr=sd, capsize=3, color=colour[m],
             label=None if m in labelled else m)
      labelled.add(m)
      ax.scatter([x] * len(by[(a, m)]), by[(a, m)], s=9, c='k', zorder=4)
    if a in TRIPLET_GMPNN:
      ax.hlines(TRIPLET_GMPNN[a], i - 0.42, i + 0.42, colors='k', linestyles='--',
                label=None if 'ref' in labelled else 'Triplet-GMPNN (paper)', zorder=5)
      labelled.add('ref')
  ax.set_xticks(range(len(algos)))
  ax.set_xticklabels(algos, rotation=20, ha='right')
  ax.set_ylabel('OOD score (%), dots: seeds')
  ax.set_ylim(0, 105)
  ax.legend(fontsize=8, loc='upper left', bbox_to_anchor=(1.0, 1.0))
  fig.tight_layout()
  fig.savefig(os.path.join(plot_dir, 'ood_scores.png'), dpi=120)
  plt.close(fig)
  fig, axes = plt.subplots(1, len(algos), figsize=(4 * len(algos), 3.2), squeeze=False)
  seen = set()
  for ax, a in zip(axes[0], algos):
    for r in rows:
      if r['algorithm'] != a:
        continue
      path = os.path.join(r['_dir'], 'metrics.jsonl')
      if not os.path.exists(path):
        continue
      records, _ = storage.read_jsonl(path)      # a torn line is left out
      val = [v for v in records if v.get('kind') == 'val' and 'step' in v and 'score' in v]
      if r.get('_multi_task'):     # the algorithm's own curve, not the summed score
        val = [{'step': v['step'], 'score': v['per_algorithm'][a]['score']} for v in val
               if isinstance(v.get('per_algorithm'), dict) and a in v['per_algorithm']]
      label = r['_label']
      ax.plot([v['step'] for v in val], [v['score'] for v in val],
              color=f'C{methods.index(label) % 10}', alpha=0.7,
              label=None if (a, label) in seen else label)      # one legend entry per method
      seen.add((a, label))
    ax.set_title(a)
    ax.set_xlabel('step')
    ax.set_ylabel('validation score')
    ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(os.path.join(plot_dir, 'validation_curves.png'), dpi=120)
  plt.close(fig)
  return '\n![OOD scores](ood_scores.png)\n\n![Validation curves](validation_curves.png)\n'


def _size_plot(plot_dir: str, s: _Scores) -> str:
  """ood_vs_size.png: per algorithm, the mean OOD score of each method against
  test size (log scale), a band of +- one std over seeds, each seed a dot."""
  sizes_of = s.sizes_by_algorithm
  algos = list(sizes_of)
  if not algos:
    return ''
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(algos), figsize=(3.8 * len(algos), 3.2), squeeze=False)
  for ax, a in zip(axes[0], algos):
    for k, m in enumerate(s.methods):
      ns = [n for n in sizes_of[a] if s.by_size.get((a, m, n))]
      if not ns:
        continue
      stats = [_mean_std(list(s.by_size[(a, m, n)].values())) for n in ns]
      mu = [x[0] for x in stats]
      sd = [x[1] for x in stats]
      colour = f'C{k % 10}'
      ax.plot(ns, mu, marker='o', color=colour, label=m)
      ax.fill_between(ns, [u - v for u, v in zip(mu, sd)], [u + v for u, v in zip(mu, sd)],
                      color=colour, alpha=0.15)
      for n in ns:
        ys = list(s.by_size[(a, m, n)].values())
        ax.scatter([n] * len(ys), ys, s=6, color=colour, alpha=0.6)
    ax.set_xscale('log', base=2)
    ax.set_xticks(sizes_of[a])
    ax.set_xticklabels([str(n) for n in sizes_of[a]])
    ax.set_ylim(0, 105)
    ax.set_title(a)
    ax.set_xlabel('test size n (train: n <= 16)')
    ax.set_ylabel('OOD score (%)')
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(plot_dir, 'ood_vs_size.png'), dpi=120)
  plt.close(fig)
  return '\n![OOD score against test size](ood_vs_size.png)\n'


# --------------------------------------------------------------------------- CLI
def add_commands(sub) -> None:
  p = sub.add_parser('sweep', help='run a grid of algorithms x methods x seeds (resumable)',
                     epilog='protocols: ' + '; '.join(f'{p.name}: {p.description}'
                                                      for p in PROTOCOLS.values()))
  p.add_argument('--protocol', default='cpu', help=f"one of {', '.join(PROTOCOLS)}")
  p.add_argument('--algorithms', nargs='+', required=True,
                 help="algorithm names, each its own run; 'a+b+c' (or 'a,b,c', as in nar "
                      "train) is one multi-task run of the three")
  p.add_argument('--methods', default='baseline,hint_relic')
  p.add_argument('--seeds', type=int, default=None,
                 help="default: the protocol's ("
                      + ', '.join(f'{p.name} {p.seeds}' + ''.join(
                          f', {a} {n}' for a, n in p.algorithm_seeds.items())
                                  for p in PROTOCOLS.values()) + ')')
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
