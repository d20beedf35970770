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
  """Keeps `result` (`nar.eval_run.evaluate_invariance`) in the run's file, beside
  its evaluations at other sizes (the newest measurement wins).

  Raises:
    storage.StorageError: as `record_evaluations`.
  """
  path = os.path.join(run_dir, EVALUATIONS_FILE)
  entries = _entries_to_update(path)
  entries[INVARIANCE_KEY] = {k: v for k, v in result.items() if k != 'run'}
  storage.atomic_write_json(path, entries)


def algorithm_score(entry: dict, algorithm: str, multi_task: bool) -> Optional[float]:
  """The score of `algorithm` in one entry: the entry's own for a single-task
  run, its `per_algorithm` one for a multi-task run (None if absent)."""
  if not multi_task:
    return entry.get('score')
  own = (entry.get('per_algorithm') or {}).get(algorithm)
  score = own.get('score') if isinstance(own, dict) else None
  return score if _is_score(score) else None


def _entries_to_update(path: str) -> dict:
  """The file's entries, to add to; {} when there is none yet.

  Raises:
    storage.StorageError: it cannot be read, or is not a JSON object (rewriting
      it would lose what it holds).
  """
  entries = {}
  if os.path.exists(path):
    try:
      with open(path, 'rb') as f:
        entries = json.loads(f.read().decode('utf-8'))
    except OSError as e:
      raise storage.storage_error(path, e, 'read') from e
    except ValueError as e:
      entries = e
    if not isinstance(entries, dict):
      raise storage.StorageError(f'{path} is not a record of evaluations (not a JSON object); '
                                 'move it away to record new ones', path)
  return entries


def record_evaluations(run_dir: str, results: list, num_samples: Optional[int]) -> None:
  """Adds `results` (one dict per size: size, checkpoint_step, score, the
  per-output scores and, multi-task, per_algorithm) to the run's file; what the
  file held for other sizes is kept as it was.

  Raises:
    storage.StorageError: the file cannot be written (a read-only run), or it
      exists and is not a JSON object (rewriting it would lose what it holds).
  """
  path = os.path.join(run_dir, EVALUATIONS_FILE)
  entries = _entries_to_update(path)
  kept_apart = ('run', 'algorithm', 'size', 'checkpoint_step', 'score', 'per_algorithm')
  for res in results:
    entry = {'score': res['score'], 'checkpoint_step': res['checkpoint_step'],
             'num_samples': num_samples,
             'scores': {k: v for k, v in res.items() if k not in kept_apart}}
    if 'per_algorithm' in res:
      entry['per_algorithm'] = res['per_algorithm']
    entries[str(res['size'])] = entry
  storage.atomic_write_json(path, dict(sorted(entries.items(), key=lambda kv: _size_key(kv[0]))))


def _size_key(key: str) -> tuple:
  """Sizes in numeric order; a key that is no size (kept from the file) after them."""
  try:
    return (0, int(key), '')
  except ValueError:
    return (1, 0, key)
