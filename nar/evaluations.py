"""A run's evaluations at other sizes (`nar evaluate --size`) and of its
invariance across twins (`nar evaluate --invariance`): evaluations.json.

One entry per test size, the newest evaluation of a size winning:

    {"128": {"score": 0.71, "checkpoint_step": 3000, "num_samples": null,
             "scores": {"pi": 0.71},
             "per_algorithm": {...}}}     # multi-task runs: {algorithm: {"score", "scores"}}

A multi-task run's `score` is the mean over its algorithms (as its results.json's
test_score); `nar report` reads each algorithm's own from `per_algorithm`.
Plain data: the command line and the report read it without JAX.
"""

from __future__ import annotations

import json
import os
from typing import Optional

from nar import storage

EVALUATIONS_FILE = 'evaluations.json'
# The key of the invariance measurement in the same file (sizes are the others).
INVARIANCE_KEY = 'invariance'


def _is_score(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool)


def read_evaluations(run_dir: str) -> dict:
  """A run's recorded evaluations, {size: entry}; {} if none or unreadable (an
  entry without a numeric score is skipped)."""
  try:
    with open(os.path.join(run_dir, EVALUATIONS_FILE)) as f:
      data = json.load(f)
    return {int(k): v for k, v in data.items()
            if k.isdigit() and isinstance(v, dict) and _is_score(v.get('score'))}
  except (OSError, ValueError, AttributeError, TypeError):
    return {}


def _read_file(run_dir: str) -> dict:
  try:
    with open(os.path.join(run_dir, EVALUATIONS_FILE)) as f:
      data = json.load(f)
    return data if isinstance(data, dict) else {}
  except (OSError, ValueError):
    return {}


def read_invariance(run_dir: str) -> Optional[dict]:
  """A run's recorded invariance measurement (`nar evaluate --invariance`), or None."""
  entry = _read_file(run_dir).get(INVARIANCE_KEY)
  return entry if isinstance(entry, dict) and isinstance(entry.get('per_algorithm'), dict) else None


def record_invariance(run_dir: str, result: dict) -> None:
  """Keeps `result` (`nar.train.evaluate_invariance`) in the run's file, beside
  its evaluations at other sizes (the newest measurement wins)."""
  entries = _read_file(run_dir)
  entries[INVARIANCE_KEY] = {k: v for k, v in result.items() if k != 'run'}
  storage.atomic_write_json(os.path.join(run_dir, EVALUATIONS_FILE), entries)


def algorithm_score(entry: dict, algorithm: str, multi_task: bool) -> Optional[float]:
  """The score of `algorithm` in one entry: the entry's own for a single-task
  run, its `per_algorithm` one for a multi-task run (None if absent)."""
  if not multi_task:
    return entry.get('score')
  own = (entry.get('per_algorithm') or {}).get(algorithm)
  score = own.get('score') if isinstance(own, dict) else None
  return score if _is_score(score) else None


def record_evaluations(run_dir: str, results: list, num_samples: Optional[int]) -> None:
  """Adds `results` (one dict per size: size, checkpoint_step, score, the
  per-output scores and, multi-task, per_algorithm) to the run's file."""
  kept = _read_file(run_dir)
  entries = {str(k): v for k, v in read_evaluations(run_dir).items()}
  kept_apart = ('run', 'algorithm', 'size', 'checkpoint_step', 'score', 'per_algorithm')
  for res in results:
    entry = {'score': res['score'], 'checkpoint_step': res['checkpoint_step'],
             'num_samples': num_samples,
             'scores': {k: v for k, v in res.items() if k not in kept_apart}}
    if 'per_algorithm' in res:
      entry['per_algorithm'] = res['per_algorithm']
    entries[str(res['size'])] = entry
  entries = dict(sorted(entries.items(), key=lambda kv: int(kv[0])))
  if INVARIANCE_KEY in kept:
    entries[INVARIANCE_KEY] = kept[INVARIANCE_KEY]
  storage.atomic_write_json(os.path.join(run_dir, EVALUATIONS_FILE), entries)
