"""Experiment tracking (`--log tensorboard,wandb`): what TensorBoard's own reader and
the W&B offline run files hold equals metrics.jsonl, also across a resume."""

import contextlib
import glob
import io
import json
import os
import struct
import zlib

import numpy as np
import pytest

from nar import cli, tracking
from nar.config import ConfigError, TrainConfig
from nar.train import train


def tiny(out, cache, **kw):
  base = dict(algorithm='bfs', steps=6, hidden=8, batch_size=4, eval_every=3, log_every=1,
              train_sizes=(4, 5), val_samples=8, test_samples=8, test_size=8, eval_batch_size=4,
              out=str(out), cache_dir=str(cache), seed=3, log='tensorboard,wandb')
  base.update(kw)
  return TrainConfig(**base).validate()


def expected_series(records: list) -> dict:
  """tag -> {step: value} of the metrics records, each numeric value its own
  scalar (tags as documented in nar/tracking.py)."""
  out = {}
  for r in records:
    prefix = r['kind'] + (f"/n{r['size']}" if 'size' in r else '')
    for key, value in r.items():
      if key in ('kind', 'step', 'size') or isinstance(value, bool):
        continue
      if isinstance(value, (int, float)):
        out.setdefault(f'{prefix}/{key}', {})[r['step']] = float(value)
  return out


def tensorboard_series(logdir: str) -> dict:
  """tag -> {step: value}, read by TensorBoard's EventAccumulator (which applies the
  restart markers of a resumed run, as TensorBoard shows it)."""
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  acc = EventAccumulator(logdir, size_guidance={'scalars': 0})
  acc.Reload()
  out = {}
  for tag in acc.Tags()['scalars']:
    events = acc.Scalars(tag)
    steps = [e.step for e in events]
    assert len(steps) == len(set(steps)), (tag, steps)     # each step once
    out[tag] = {e.step: e.value for e in events}
  return out


def wandb_records(path: str):
  """The records of a W&B offline run file (.wandb): W&B's transaction log (LevelDB
  log format: 32 KiB blocks of checksummed chunks), each chunk sequence one
  `wandb_internal_pb2.Record`, decoded by W&B's own protobuf schema. (wandb 0.31
  no longer ships its Python reader, wandb.sdk.internal.datastore.)"""
  from wandb.proto import wandb_internal_pb2
  raw = open(path, 'rb').read()
  ident, magic, version = struct.unpack('<4sHB', raw[:7])
  assert (ident, magic, version) == (b':W&B', 0xBEE1, 0)
  block, i, data = 32768, 7, b''
  while i + 7 <= len(raw):
    if block - i % block < 7:           # a block's tail too short for a header: padding
      i += block - i % block
      continue
    checksum, length, kind = struct.unpack('<IHB', raw[i:i + 7])
    chunk = raw[i + 7:i + 7 + length]
    assert checksum == zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF
    i += 7 + length
    data = chunk if kind in (1, 2) else data + chunk          # FULL, FIRST | MIDDLE, LAST
    if kind in (1, 4):
      record = wandb_internal_pb2.Record()
      record.ParseFromString(data)
      yield record


def wandb_series(run_dir: str) -> dict:
  """tag -> {step: value} over the run's offline fragments in the order they were
  written, as `wandb sync --id` of the fragments builds the run: a run's steps only
  go up, so a step an earlier fragment logged keeps that fragment's row."""
  out, ids, steps = {}, set(), set()
  paths = sorted(glob.glob(os.path.join(run_dir, 'wandb', 'offline-run-*', '*.wandb')))
  assert paths
  for path in paths:
    for record in wandb_records(path):
      which = record.WhichOneof('record_type')
      if which == 'run':
        ids.add(record.run.run_id)
      if which != 'history':
        continue
      # A key with '/' is stored as its path (nested_key).
      row = {item.key or '/'.join(item.nested_key): json.loads(item.value_json)
             for item in record.history.item}
      if row['_step'] in steps:
        continue
      steps.add(row['_step'])
      for key, value in row.items():
        if not key.startswith('_'):
          out.setdefault(key, {})[row['_step']] = float(value)
  assert len(ids) == 1, ids          # every fragment is the same W&B run
  return out, len(paths)


def test_tensorboard_and_wandb_hold_metrics_jsonl_values_across_a_resume(tmp_path, monkeypatch):
  monkeypatch.setenv('WANDB_MODE', 'offline')
  cache, out = tmp_path / 'cache', tmp_path / 'run'
  assert train(tiny(out, cache), progress=False, stop_after=4) == {'stopped_at': 4}
  # The first process logged step 4, past its last checkpoint (step 3): the
  # resumed one writes it again, and the trackers show the second, as metrics.jsonl.
  first = tensorboard_series(str(out / 'tensorboard'))
  assert 4 in first['train/loss']
  train(tiny(out, cache), progress=False)
  records = [json.loads(x) for x in open(out / 'metrics.jsonl')]
  expected = expected_series(records)
  # The curves a researcher looks at, and every other scalar of the records.
  assert sorted(expected['train/loss']) == [1, 2, 3, 4, 5, 6]
  assert sorted(expected['val/score']) == [3, 6]
  assert 'test/n8/score' in expected and 'train/hint/pi_h' in expected
  assert 'train/samples_per_s' in expected and 'train/output/pi' in expected
  board = tensorboard_series(str(out / 'tensorboard'))
  assert set(board) == set(expected)
  for tag, series in expected.items():
    assert sorted(board[tag]) == sorted(series), tag
    np.testing.assert_allclose([board[tag][s] for s in sorted(series)],
                               [series[s] for s in sorted(series)], rtol=1e-6, err_msg=tag)
  runs, fragments = wandb_series(str(out))
  assert fragments == 2
  assert set(runs) == set(expected)
  for tag, series in expected.items():
    if tag == 'train/samples_per_s':
      # Step 4, logged by both processes, keeps the first's row: the same losses
      # (training is deterministic), but the first process's timing of it.
      runs[tag].pop(4, None)
    assert runs[tag] == series, tag          # JSON: the same doubles


def test_off_by_default_writes_no_tracker_files(tmp_path):
  config = tiny(tmp_path / 'run', tmp_path / 'cache', log='none', steps=2, eval_every=2)
  assert TrainConfig().trackers == () and config.trackers == ()
  train(config, progress=False)
  assert not os.path.exists(tmp_path / 'run' / 'tensorboard')
  assert not os.path.exists(tmp_path / 'run' / 'wandb')


def test_scalars_of_a_multi_task_record_are_tagged_by_algorithm():
  step, values = tracking.scalars({'kind': 'train', 'step': 7, 'algorithm': 'bfs', 'loss': 0.5,
                                   'hint/pi_h': 0.25, 'note': 'x', 'flag': True,
                                   'bad': float('nan')})
  assert step == 7 and values == {'train/bfs/loss': 0.5, 'train/bfs/hint/pi_h': 0.25}
  _, values = tracking.scalars({'kind': 'val', 'step': 3, 'score': 1.5,
                                'per_algorithm': {'bfs': {'score': 1.0, 'pi': 1.0},
                                                  'dfs': {'score': 0.5}}})
  assert values == {'val/score': 1.5, 'val/per_algorithm/bfs/score': 1.0,
                    'val/per_algorithm/bfs/pi': 1.0, 'val/per_algorithm/dfs/score': 0.5}


def test_a_missing_tracker_library_is_one_line_before_anything_is_written(tmp_path,
                                                                          monkeypatch):
  import importlib.util
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, 'find_spec',
                      lambda name, *a: None if name == 'wandb' else real(name, *a))
  config = tiny(tmp_path / 'run', tmp_path / 'cache', log='wandb')
  with pytest.raises(ConfigError, match=r'needs the wandb package: pip install '
                                        r'"nar-hint-relic\[wandb\]"'):
    train(config, progress=False)
  assert not os.path.exists(tmp_path / 'run')


@pytest.mark.parametrize('value,why', [('tb', "unknown log 'tb'"),
                                       ('wandb,wandb', 'names a tracker twice'),
                                       ('none,tensorboard', 'or none with others')])
def test_a_bad_log_setting_is_one_line(value, why):
  err = io.StringIO()
  with contextlib.redirect_stderr(err):
    code = cli.main(['train', '-a', 'bfs', '--log', value])
  lines = err.getvalue().strip().splitlines()
  assert code == 2 and len(lines) == 1 and why in lines[0], lines


def test_log_may_change_when_a_run_resumes():
  from nar.config import config_conflicts
  saved = TrainConfig(log='none').validate().to_json()
  assert config_conflicts(saved, TrainConfig(log='tensorboard').validate()) == []
