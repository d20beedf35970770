"""Collection of a grid's results for the report: every results.json under a
directory (`collect`; a multi-task run gives a row per algorithm), and the
scores the report's tables read (`_Scores`, `_scores`), including which
columns are compared beyond the baseline (`_comparison_pairs`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

from experiments import protocols
from experiments.protocols import Protocol
from experiments.stats import _mean_std
from nar import registry
from nar.config import ConfigError
from nar.evaluations import algorithm_score, read_evaluations, read_invariance


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
      protocol = protocols.PROTOCOLS.get(record.get('protocol'))
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
