"""The run directory: its files and what reads and writes them, and the
signals that stop a run.

* `RunDir`: the paths of a run's files (config.json, metrics.jsonl,
  results.json, checkpoints/), its lock against a second process, the check of
  a saved configuration on resume, and metrics.jsonl's records;
* the best checkpoint: `load_best` (re-established from the step checkpoint of
  the best step when it is unusable) and `_recorded_best` (the best step a run
  recorded, for `nar evaluate`);
* `_install_stop_handlers` / `_restore_handlers`: SIGTERM/SIGINT end a run at
  the next step boundary, after a checkpoint;
* `warn`: warnings and progress lines on stderr.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from typing import Optional

from nar import checkpoint as ckpt
from nar import storage
from nar import tracking
from nar.config import ConfigError, TrainConfig, config_conflicts, load_config_file
from nar.errors import RunError, RunInUseError


def warn(msg: str) -> None:
  """A warning or a progress line: on stderr, so that stdout carries only results
  (the scores, the JSON of `nar evaluate`) and pipes work."""
  print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- run files
class RunDir:
  """The files of a run. Every write goes through `nar.storage`: a crash or a full
  disk at any byte leaves each file's old content or its new one (metrics.jsonl:
  whole records, a torn last line at worst, which resume drops with a warning)."""

  def __init__(self, path: str):
    self.path = path
    self.checkpoints = os.path.join(path, 'checkpoints')
    self.best = os.path.join(self.checkpoints, 'best')
    self.config = os.path.join(path, 'config.json')
    self.metrics = os.path.join(path, 'metrics.jsonl')
    self.metrics_before_restart = os.path.join(path, 'metrics-before-restart.jsonl')
    self.results = os.path.join(path, 'results.json')
    self.log = os.path.join(path, 'train.log')
    self.tracker = tracking.Tracker()     # curves besides metrics.jsonl (`log` setting)

  def step_checkpoint(self, step: int) -> str:
    return os.path.join(self.checkpoints, f'step-{step:08d}')

  def lock(self) -> None:
    """Refuses a second process on the same run (two sweeps, a repeated command):
    an exclusive lock on <run>/.lock, held until this process exits."""
    import fcntl
    path = os.path.join(self.path, '.lock')
    try:
      self._lock_file = open(path, 'a')
    except OSError as e:
      raise storage.storage_error(path, e, 'open') from e
    try:
      fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      self.unlock()
      raise RunInUseError(f'{self.path} is in use by another process (a run is going on there); '
                          'wait for it or stop it first') from None

  def unlock(self) -> None:
    if getattr(self, '_lock_file', None) is not None:
      self._lock_file.close()
      self._lock_file = None

  def saved_progress(self) -> bool:
    """Whether anything worth keeping was saved: a checkpoint or results."""
    return bool(ckpt.step_dirs(self.checkpoints) or os.path.isdir(self.best)
                or os.path.exists(self.results))

  def prepare(self, config: TrainConfig, report=warn) -> bool:
    """Creates or checks the directory (and locks it), then writes config.json
    (`config` must be validated). Returns True if resuming."""
    try:
      os.makedirs(self.path, exist_ok=True)
      # A probe of its own: processes starting on one directory at once never share it.
      fd, probe = tempfile.mkstemp(dir=self.path, prefix=storage.TMP_PREFIX, suffix='-probe')
      os.close(fd)
      storage.remove_quietly(probe)
    except OSError as e:
      raise ConfigError(f'output directory {self.path} is not writable: {storage.cause(e)}') from e
    self.lock()
    storage.remove_stale_temporaries(self.path)
    if os.path.exists(self.config):
      try:
        saved = load_config_file(self.config)
      except ConfigError as e:
        raise RunError(f'{e}; move it away (or use another --out) to start this run '
                       'there') from e
      conflicts = config_conflicts(saved, config)
      if conflicts and self.saved_progress():
        raise RunError(f'{self.path} holds a run with another configuration ('
                       + '; '.join(conflicts) + '); use another --out or the same settings')
      if conflicts:
        report(f'warning: {self.config} named other settings ({"; ".join(conflicts)}) but '
               'that start saved nothing; replaced')
      resuming = not conflicts
    else:
      resuming = False
    storage.atomic_write_json(self.config, config.to_json(), allow_nan=False)
    return resuming

  def append_metrics(self, record: dict) -> None:
    storage.append_line(self.metrics, json.dumps(record))
    self.tracker.log(record)

  def read_metrics(self, report=warn) -> list[dict]:
    """The records of metrics.jsonl; a torn or foreign line is skipped with a warning."""
    if not os.path.exists(self.metrics):
      return []
    try:
      records, problems = storage.read_jsonl(self.metrics)
    except OSError as e:
      raise storage.storage_error(self.metrics, e, 'read') from e
    for problem in problems:
      report(f'warning: {self.metrics}: {problem}; skipped')
    return records

  def truncate_metrics(self, after_step: int, report=warn) -> None:
    """On resume, drop records the resumed run will write again (and any torn line).

    A run that starts over (`after_step` 0: no checkpoint survived) over records of
    later steps adds them to metrics-before-restart.jsonl, with a warning: they are
    the only trace of the lost training, and the new records replace them here."""
    if not os.path.exists(self.metrics):
      return
    records = self.read_metrics(report)
    steps = [r.get('step', 0) if isinstance(r.get('step', 0), (int, float)) else math.inf
             for r in records]
    keep = [r for r, step in zip(records, steps)
            if step <= after_step and r.get('kind') != 'test']
    later = [step for step in steps if after_step < step < math.inf]
    if after_step == 0 and later:
      aside = self.metrics_before_restart
      earlier = open(aside).read() if os.path.exists(aside) else ''   # an earlier lost start
      storage.atomic_write(aside, earlier + _jsonl(records))
      report(f'warning: {self.path} has metrics up to step {max(later)} but no checkpoint to '
             f'resume from (removed, or lost with the machine); the run starts over at step 0 '
             f'and those records are kept in {aside}')
    storage.atomic_write(self.metrics, _jsonl(keep))


def _jsonl(records: list[dict]) -> str:
  return ''.join(json.dumps(r) + '\n' for r in records)


# ----------------------------------------------------------- best checkpoint
def _best_problem(path: str, params_template, step: int) -> Optional[str]:
  """Why the best checkpoint at `path` is not the parameters of `step` (None: it is)."""
  if not os.path.isdir(path):
    return 'is missing'
  problem = ckpt.verify(path, params_template)
  if problem:
    return f'is unusable ({problem})'
  held = (ckpt.read_metadata(path) or {}).get('step')
  if held != step:
    return f'holds step {held}, not the best step {step}'
  return None


def load_best(run: RunDir, state_template, best: dict, report=warn, repair: bool = True):
  """The parameters of the best validation step `best['step']`: from checkpoints/best,
  else from the step checkpoint of that step (kept for this: the same parameters),
  which then re-establishes best/ (`repair`). RunError when neither holds them."""
  problem = _best_problem(run.best, state_template['params'], best['step'])
  score = best.get('score')
  what = (f"validation score {score:.4f} at step {best['step']}"
          if isinstance(score, (int, float)) else f"step {best['step']}")
  if problem is None:
    return ckpt.load(run.best, state_template['params'])[0]
  source = run.step_checkpoint(best['step'])
  source_problem = ckpt.verify(source, state_template) if os.path.isdir(source) else 'missing'
  if source_problem is None:
    state, _ = ckpt.load(source, state_template)
    if repair:
      ckpt.save(run.checkpoints, 'best', state['params'], {'step': best['step'], 'best': best})
      report(f'warning: best checkpoint {run.best} {problem}; re-established from {source} '
             f'(the same parameters: {what})')
    else:
      report(f'warning: best checkpoint {run.best} {problem}; using {source} (the same '
             'parameters); run the training command again to re-establish best/')
    return state['params']
  raise RunError(
      f"best checkpoint {run.best} {problem}, and {source}, which held the same parameters, is "
      f"{source_problem if source_problem == 'missing' else 'unusable: ' + source_problem}: the "
      f'best parameters ({what}) cannot be re-established. Training is deterministic: move {run.checkpoints} away and run the '
      'training command again, which trains from the start and reproduces it')


def _install_stop_handlers(flag: list) -> dict:
  """SIGTERM/SIGINT end the run at the next step boundary, after a checkpoint
  (`flag` gets (number, name) of each signal received)."""
  import signal
  import threading
  if threading.current_thread() is not threading.main_thread():
    return {}
  previous = {}
  for sig in (signal.SIGTERM, signal.SIGINT):
    def handler(signum, frame):
      if flag and callable(previous.get(signum)):   # a second one: the caller's rule, at once
        previous[signum](signum, frame)
      flag.append((int(signum), signal.Signals(signum).name))
    previous[sig] = signal.signal(sig, handler)
  return previous


def _restore_handlers(previous: dict) -> None:
  import signal
  for sig, handler in previous.items():
    signal.signal(sig, handler)


def _recorded_best(run: RunDir) -> Optional[dict]:
  """The best validation step of a run: from results.json (a finished run), else
  the newest intact step checkpoint, else checkpoints/best's own record."""
  try:
    with open(run.results) as f:
      best = json.load(f).get('best_val')
    if isinstance(best, dict) and isinstance(best.get('step'), int):
      return best
  except (OSError, ValueError, AttributeError):
    pass
  for _, path in ckpt.step_dirs(run.checkpoints):
    if ckpt.verify(path) is None:
      best = (ckpt.read_metadata(path) or {}).get('best')
      if isinstance(best, dict) and isinstance(best.get('step'), int) and best['step'] >= 0:
        return best
      break
  best = (ckpt.read_metadata(run.best) or {}).get('best')
  return best if isinstance(best, dict) and isinstance(best.get('step'), int) else None
