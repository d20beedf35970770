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
  said = capsys.readouterr()
  assert 'checksum' in said.err and said.out == ''     # a warning: on stderr, once
  assert said.err.count('ignored and rebuilt') == 1


def test_cache_from_another_dm_clrs_version_is_rebuilt(tmp_path, capsys):
  key = cache.SplitKey('bfs', 'val', 5, 2, 3)
  path = cache.save(str(tmp_path), key, _split())
  manifest_path = path[:-4] + '.json'
  manifest = json.load(open(manifest_path))
  manifest['dm_clrs'] = '1.0.0'
  json.dump(manifest, open(manifest_path, 'w'))
  assert cache.load(str(tmp_path), key) is None
  said = capsys.readouterr()
  assert 'dm-clrs 1.0.0' in said.err and said.out == ''


# ------------------------------------------------------------------ nar.storage
# Faults are injected where saved bytes reach a file (`storage._write_bytes`): a
# crash after a prefix of the bytes (a kill, a power cut), or an OSError after a
# prefix (ENOSPC: disk full) or before any byte (EACCES: permission denied).
import errno  # noqa: E402
import threading  # noqa: E402

from hypothesis import given, settings, strategies as st  # noqa: E402

from nar import storage  # noqa: E402


class Crash(BaseException):
  """The process dies here (nothing after it runs but `finally` blocks)."""


def inject(monkeypatch, fault, fraction=0.5, match=''):
  """Makes the next write to a target containing `match` fail with `fault`
  ('crash', 'enospc' or 'eacces') after `fraction` of its bytes."""
  real = storage._write_bytes
  state = {'armed': True}

  def faulty(fd, data, target):
    if state['armed'] and match in target:
      state['armed'] = False
      if fault == 'eacces':
        raise OSError(errno.EACCES, os.strerror(errno.EACCES))
      real(fd, data[:int(len(data) * fraction)], target)
      if fault == 'crash':
        raise Crash(target)
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    real(fd, data, target)
  monkeypatch.setattr(storage, '_write_bytes', faulty)
  return state


def _raises_fault(fault):
  return pytest.raises(Crash if fault == 'crash' else storage.StorageError)


@settings(max_examples=60, deadline=None)
@given(fraction=st.floats(0, 1, exclude_max=True), fault=st.sampled_from(['crash', 'enospc',
                                                                          'eacces']),
       new=st.binary(min_size=1, max_size=300))
def test_atomic_write_leaves_old_or_new_content_whatever_byte_it_fails_at(
    tmp_path_factory, fraction, fault, new):
  d = tmp_path_factory.mktemp('atomic')
  path = str(d / 'results.json')
  storage.atomic_write(path, b'old content')
  with pytest.MonkeyPatch.context() as mp:
    inject(mp, fault, fraction)
    with _raises_fault(fault) as e:
      storage.atomic_write(path, new)
  assert open(path, 'rb').read() == b'old content'
  assert os.listdir(d) == ['results.json']            # no temporary left behind
  if fault != 'crash':
    msg = str(e.value)
    assert path in msg and len(msg.splitlines()) == 1
    assert ('disk full' if fault == 'enospc' else 'permission denied') in msg
  storage.atomic_write(path, new)
  assert open(path, 'rb').read() == new


@settings(max_examples=60, deadline=None)
@given(fraction=st.floats(0, 1, exclude_max=True), fault=st.sampled_from(['crash', 'enospc',
                                                                          'eacces']))
def test_append_keeps_whole_records_and_a_torn_tail_is_skipped(tmp_path_factory, fraction,
                                                               fault):
  path = str(tmp_path_factory.mktemp('append') / 'metrics.jsonl')
  for step in (1, 2):
    storage.append_line(path, json.dumps({'kind': 'train', 'step': step, 'loss': 0.5}))
  before = open(path, 'rb').read()
  with pytest.MonkeyPatch.context() as mp:
    inject(mp, fault, fraction)
    with _raises_fault(fault):
      storage.append_line(path, json.dumps({'kind': 'train', 'step': 3, 'loss': 0.25}))
  after = open(path, 'rb').read()
  if fault != 'crash':
    assert after == before          # the failed append is cut off again
  else:
    assert after.startswith(before)  # a kill can leave a torn last line...
  records, problems = storage.read_jsonl(path)
  assert [r['step'] for r in records][:2] == [1, 2]
  fragment = after[len(before):]
  try:       # cut off after its last byte but the newline: a whole record still
    torn = bool(fragment) and not isinstance(json.loads(fragment), dict)
  except ValueError:
    torn = True
  assert len(problems) == (1 if torn else 0) and all('torn' in p for p in problems)
  # ...which never swallows the next record.
  storage.append_line(path, json.dumps({'kind': 'train', 'step': 3, 'loss': 0.25}))
  records, _ = storage.read_jsonl(path)
  assert [r['step'] for r in records][-1] == 3 and [r['step'] for r in records][:2] == [1, 2]


@pytest.mark.parametrize('fault', ['crash', 'enospc', 'eacces'])
@pytest.mark.parametrize('which', [checkpoint.STATE, checkpoint.MANIFEST])
def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch, fault, which):
  d = str(tmp_path)
  checkpoint.save(d, 'best', _state(1.0), {'step': 1})
  with monkeypatch.context() as mp:
    inject(mp, fault, 0.3, match=which)
    with _raises_fault(fault) as e:
      checkpoint.save(d, 'best', _state(2.0), {'step': 2})
      checkpoint.save(d, 'step-00000002', _state(2.0), {'step': 2})
  if fault != 'crash':
    assert os.path.join(d, 'best', which) in str(e.value)
  state, meta = checkpoint.load(os.path.join(d, 'best'), _state())
  assert meta['step'] == 1 and state['params']['w'][0, 0] == 1.0
  assert sorted(os.listdir(d)) == ['best']


def test_a_crash_between_the_renames_of_a_checkpoint_is_recovered(tmp_path, monkeypatch):
  d = str(tmp_path)
  checkpoint.save(d, 'best', _state(1.0), {'step': 1})
  calls = []
  real = os.replace

  def dying_replace(src, dst):
    calls.append(dst)
    if len(calls) == 2:       # best -> best.old done; tmp -> best not yet
      raise Crash()
    real(src, dst)
  monkeypatch.setattr(storage.os, 'replace', dying_replace)
  with pytest.raises(Crash):
    checkpoint.save(d, 'best', _state(2.0), {'step': 2})
  monkeypatch.undo()
  assert not os.path.exists(os.path.join(d, 'best'))
  assert checkpoint.recover_all(d) == ['best']
  state, meta = checkpoint.load(os.path.join(d, 'best'), _state())
  assert meta['step'] == 1


def test_pruning_keeps_the_step_of_the_best_checkpoint(tmp_path):
  d = str(tmp_path)
  for step in range(1, 6):
    checkpoint.save(d, f'step-{step:08d}', _state(step), {'step': step})
  checkpoint.prune(d, keep=1, protect=2)
  assert [s for s, _ in checkpoint.step_dirs(d)] == [5, 2]


def test_a_checkpoint_that_does_not_read_back_is_never_put_in_place(tmp_path, monkeypatch):
  d = str(tmp_path)
  checkpoint.save(d, 'best', _state(1.0), {'step': 1})
  real = storage._write_bytes

  def bit_flip(fd, data, target):          # the disk returns other bytes than written
    if target.endswith(checkpoint.STATE):
      data = bytes([data[0] ^ 1]) + data[1:]
    real(fd, data, target)
  monkeypatch.setattr(storage, '_write_bytes', bit_flip)
  with pytest.raises(storage.StorageError, match='did not read back intact'):
    checkpoint.save(d, 'best', _state(2.0), {'step': 2})
  monkeypatch.undo()
  assert checkpoint.load(os.path.join(d, 'best'), _state())[1]['step'] == 1


@pytest.mark.parametrize('fault', ['crash', 'enospc', 'eacces'])
@pytest.mark.parametrize('which', ['.npz', '.json'])
def test_a_cache_that_cannot_be_written_is_rebuilt_later(tmp_path, monkeypatch, capsys, fault,
                                                         which):
  key = cache.SplitKey('bfs', 'val', 5, 2, 3)
  batch = _split()
  with monkeypatch.context() as mp:
    inject(mp, fault, 0.4, match=which)
    if fault == 'crash':
      with pytest.raises(Crash):
        cache.save(str(tmp_path), key, batch)
    else:      # disk full or read-only: the run goes on without caching
      assert cache.save(str(tmp_path), key, batch) is None
      said = capsys.readouterr()
      assert said.err.count('going on without caching') == 1 and said.out == ''
  assert cache.load(str(tmp_path), key) is None         # never a torn entry
  cache.save(str(tmp_path), key, batch)
  np.testing.assert_array_equal(cache.load(str(tmp_path), key).lengths, batch.lengths)


def test_corrupt_cache_manifest_of_another_shape_is_rebuilt(tmp_path):
  key = cache.SplitKey('bfs', 'val', 5, 2, 3)
  path = cache.save(str(tmp_path), key, _split())
  open(path[:-4] + '.json', 'w').write('[1, 2]')
  assert cache.load(str(tmp_path), key) is None


def test_writers_of_one_file_at_once_never_share_a_temporary_file(tmp_path):
  path = str(tmp_path / 'shared.json')
  errors = []

  def write(k):
    try:
      for i in range(50):
        storage.atomic_write_json(path, {'writer': k, 'i': i})
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)
  threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors and json.load(open(path))['i'] == 49
  assert os.listdir(tmp_path) == ['shared.json']
