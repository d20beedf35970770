"""Experiment tracking: the records of metrics.jsonl, also as TensorBoard or W&B curves.

metrics.jsonl stays the run's own record (what `nar report` reads, what resumes);
a tracker receives each record as it is written there (`nar.run_dir.RunDir`) and
shows the same numbers where researchers watch training curves. Chosen by the
`log` setting (`--log tensorboard,wandb`), off by default; the libraries are
optional extras (`pip install "nar-hint-relic[tensorboard,wandb]"`).

  * tensorboard: event files in <run>/tensorboard (tensorboardX's writer, read by
    TensorBoard itself). A resumed run purges what it will write again: its events
    start with a restart marker at the first step it redoes, past which TensorBoard
    drops the earlier process's points, as metrics.jsonl drops its records.
  * wandb: Weights & Biases in offline mode, <run>/wandb/offline-run-*; one per
    process, all under the run's own W&B id (<run>/wandb/nar-run-id), so that
    `wandb sync --id ID <run>/wandb/offline-run-*` uploads them as one run. A W&B
    run's steps only go up: steps a resumed process redoes keep the earlier
    process's values there (the same losses and scores, training being
    deterministic; its own samples/s).

Each numeric value of a record is one scalar, tagged by the record's kind, its
algorithm (multi-task) and test size, and its key path:
`train/loss`, `train/hint/pi_h`, `val/score`, `val/per_algorithm/bfs/score`,
`train/bfs/loss` (a multi-task step of bfs), `test/n64/score`.

A new tracker: subclass `Tracker` and `register_tracker(name, factory)`, where
`factory(run_dir, config, start_step)` returns it; then add the name to
`nar.config.TRACKERS`.
"""

from __future__ import annotations

import math
import os
import uuid
from typing import Callable, Iterable, Optional

from nar.config import ConfigError, TrainConfig

# Keys that say what a record is, not values to plot.
_LABELS = ('kind', 'step', 'algorithm', 'size')


class Tracker:
  """Receives the run's metrics records; does nothing by default (tracking off)."""

  def log(self, record: dict) -> None:
    """One record as written to metrics.jsonl ({'kind', 'step', ...})."""

  def close(self) -> None:
    """Writes out what is buffered; the tracker is not used afterwards."""


def scalars(record: dict) -> tuple[int, dict]:
  """(step, {tag: value}) of a metrics record: every finite number in it (nested
  dicts joined with '/'), under `kind[/algorithm][/n<size>]/`."""
  prefix = [str(record.get('kind', 'metrics'))]
  if isinstance(record.get('algorithm'), str):
    prefix.append(record['algorithm'])
  if isinstance(record.get('size'), int):
    prefix.append(f"n{record['size']}")
  out = {}

  def walk(path: list, value) -> None:
    if isinstance(value, dict):
      for k, v in value.items():
        walk(path + [str(k)], v)
    elif (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value)):
      out['/'.join(path)] = float(value)
  for key, value in record.items():
    if key not in _LABELS:
      walk(prefix + [key], value)
  return int(record.get('step', 0)), out


class TensorBoardTracker(Tracker):
  """Scalars in TensorBoard event files under `<run>/tensorboard`."""

  def __init__(self, run_dir: str, config: TrainConfig, start_step: int):
    from tensorboardX import SummaryWriter
    logdir = os.path.join(run_dir, 'tensorboard')
    earlier = os.path.isdir(logdir) and any(n.startswith('events.') for n in os.listdir(logdir))
    # Resuming after step `start_step`: the records of later steps are written again.
    self._writer = SummaryWriter(logdir=logdir, purge_step=start_step + 1 if earlier else None,
                                 flush_secs=30)

  def log(self, record: dict) -> None:
    step, values = scalars(record)
    for tag, value in values.items():
      self._writer.add_scalar(tag, value, global_step=step)

  def close(self) -> None:
    self._writer.close()


class WandbTracker(Tracker):
  """Weights & Biases, offline: `<run>/wandb/offline-run-*`, synced by the user."""

  def __init__(self, run_dir: str, config: TrainConfig, start_step: int):
    import wandb
    directory = os.path.join(run_dir, 'wandb')
    os.makedirs(directory, exist_ok=True)
    run_id = _run_id(os.path.join(directory, 'nar-run-id'))
    settings = wandb.Settings(mode='offline', console='off', silent=True, x_disable_stats=True)
    self._run = wandb.init(dir=run_dir, id=run_id, project=os.environ.get('WANDB_PROJECT',
                                                                         'nar-hint-relic'),
                           name=os.path.normpath(config.out), config=config.to_json(),
                           settings=settings, resume='allow' if start_step else None)

  def log(self, record: dict) -> None:
    step, values = scalars(record)
    if values:
      self._run.log(values, step=step)

  def close(self) -> None:
    self._run.finish()


def _run_id(path: str) -> str:
  """The run's W&B id, made once and kept in `path` (every process of the run uses it)."""
  try:
    with open(path) as f:
      found = f.read().strip()
    if found:
      return found
  except FileNotFoundError:
    pass
  from nar import storage
  run_id = uuid.uuid4().hex[:12]
  storage.atomic_write(path, run_id + '\n')
  return run_id


# name -> (factory(run_dir, config, start_step) -> Tracker, the module it needs, its extra)
_TRACKERS: dict = {}


def register_tracker(name: str, factory: Callable[[str, TrainConfig, int], Tracker],
                     module: Optional[str] = None, extra: Optional[str] = None) -> None:
  """Makes `name` a value of the `log` setting; `module`: the library it imports
  (checked before a run starts), `extra`: the pip extra that installs it."""
  _TRACKERS[name] = (factory, module, extra)


register_tracker('tensorboard', TensorBoardTracker, 'tensorboardX', 'tensorboard')
register_tracker('wandb', WandbTracker, 'wandb', 'wandb')


def check_available(config: TrainConfig) -> None:
  """ConfigError (one line) when a tracker `config.log` names cannot be imported,
  before anything of the run is written."""
  import importlib.util
  for name in config.trackers:
    if name not in _TRACKERS:
      raise ConfigError(f'log: no tracker {name!r} is registered (nar.tracking)')
    _, module, extra = _TRACKERS[name]
    if module and importlib.util.find_spec(module) is None:
      raise ConfigError(f'log={name} needs the {module} package: pip install '
                        f'"nar-hint-relic[{extra}]"')


class _Several(Tracker):
  def __init__(self, trackers: Iterable[Tracker]):
    self.trackers = list(trackers)

  def log(self, record: dict) -> None:
    for t in self.trackers:
      t.log(record)

  def close(self) -> None:
    for t in self.trackers:
      t.close()


def open_trackers(config: TrainConfig, run_dir: str, start_step: int) -> Tracker:
  """The trackers `config.log` names, for a run in `run_dir` starting (or
  resuming) after step `start_step`; a `Tracker` that does nothing when off."""
  check_available(config)
  trackers = [_TRACKERS[name][0](run_dir, config, start_step) for name in config.trackers]
  return _Several(trackers) if trackers else Tracker()
