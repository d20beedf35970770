"""Checkpoints and split caches: atomic, verified, never silently wrong."""

import json
import os

import numpy as np
import pytest

from nar import cache, checkpoint
from nar.batching import pad_samples
from nar.sample import processed_spec
from tests.helpers import make_samples


def _state(x=1.0):
  return {'params': {'w': np.full((3, 2), x, np.float32)}, 'step': np.array(5)}


def test_checkpoint_round_trip_and_pruning(tmp_path):
  d = str(tmp_path)
  for step in range(5):
    checkpoint.save(d, f'step-{step:08d}', _state(step), {'step': step})
  checkpoint.prune(d, keep=2)
  assert [s for s, _ in checkpoint.step_dirs(d)] == [4, 3]
  state, meta, path = checkpoint.latest_good(d, _state())
  assert meta['step'] == 4 and state['params']['w'][0, 0] == 4.0


@pytest.mark.parametrize('damage', ['truncate', 'flip', 'manifest'])
def test_corrupt_checkpoint_falls_back_to_previous(tmp_path, damage):
  d = str(tmp_path)
  checkpoint.save(d, 'step-00000001', _state(1.0), {'step': 1})
  newest = checkpoint.save(d, 'step-00000002', _state(2.0), {'step': 2})
  state_file = os.path.join(newest, checkpoint.STATE)
  if damage == 'truncate':
    with open(state_file, 'r+b') as f:
      f.truncate(os.path.getsize(state_file) // 2)
  elif damage == 'flip':
    raw = bytearray(open(state_file, 'rb').read())
    raw[len(raw) // 2] ^= 0xFF
    open(state_file, 'wb').write(bytes(raw))
  else:
    open(os.path.join(newest, checkpoint.MANIFEST), 'w').write('{not json')
  messages = []
  state, meta, path = checkpoint.latest_good(d, _state(), report=messages.append)
  assert meta['step'] == 1 and state['params']['w'][0, 0] == 1.0
  assert messages and 'skipped' in messages[0]
  with pytest.raises(checkpoint.CheckpointError):
    checkpoint.load(newest, _state())


def test_checkpoint_of_another_structure_is_refused(tmp_path):
  path = checkpoint.save(str(tmp_path), 'best', _state(), {})
  with pytest.raises(checkpoint.CheckpointError, match='structure'):
    checkpoint.load(path, {'other': np.zeros(2)})


def _split():
  spec = processed_spec('bfs')
  return pad_samples(make_samples('bfs', 5, 3), spec, time_bucketing=False)


def test_cache_round_trip_and_corruption(tmp_path, capsys):
  key = cache.SplitKey('bfs', 'val', 5, 2, 3)
  batch = _split()
  path = cache.save(str(tmp_path), key, batch)
  loaded = cache.load(str(tmp_path), key)
  for k, v in batch.hints.items():
    np.testing.assert_array_equal(loaded.hints[k], v)
  # Truncated data file: detected, not used.
  with open(path, 'r+b') as f:
    f.truncate(100)
  assert cache.load(str(tmp_path), key) is None
  assert 'checksum' in capsys.readouterr().out


def test_cache_from_another_dm_clrs_version_is_rebuilt(tmp_path, capsys):
  key = cache.SplitKey('bfs', 'val', 5, 2, 3)
  path = cache.save(str(tmp_path), key, _split())
  manifest_path = path[:-4] + '.json'
  manifest = json.load(open(manifest_path))
  manifest['dm_clrs'] = '1.0.0'
  json.dump(manifest, open(manifest_path, 'w'))
  assert cache.load(str(tmp_path), key) is None
  assert 'dm-clrs 1.0.0' in capsys.readouterr().out
