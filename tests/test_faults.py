"""Injected faults in real (tiny) training runs, through the `nar` command.

Each file the trainer writes (config.json, metrics.jsonl appended and rewritten,
the step and best checkpoints' state and manifest, results.json) gets a fault
where its bytes reach the disk (`nar.storage._write_bytes`): a crash after a
random prefix (a kill at that byte), ENOSPC after a random prefix (disk full),
EACCES before any byte (read-only directory). Every fault must end in a
resumable run (a crash) or one line + exit 2 naming the file (disk full,
permission denied), nothing saved before lost; and the run, resumed after all
of them, must end identical to an uninterrupted one. A corrupt or missing best
checkpoint is re-established from the step checkpoint of the best step, or the
run stops saying what to do; never a test of other parameters.
"""

import contextlib
import errno
import io
import json
import os
import random
import shutil
import signal

import numpy as np
import pytest

from nar import checkpoint, cli, storage
from nar.train import RunDir
from tests.helpers import without_timings

SEED = 2
ARGS = ['train', '-a', 'bfs', '--steps', '4', '--hidden', '8', '--batch-size', '4',
        '--eval-every', '2', '--seed', str(SEED), '--test-size', '8', '--processor', 'mpnn',
        '--quiet', '--set', 'train_sizes=[4]', '--set', 'val_samples=8',
        '--set', 'test_samples=8', '--set', 'eval_batch_size=4', '--set', 'log_every=1',
        '--set', 'keep_checkpoints=1']


class Crash(BaseException):
  """The process dies here: nothing after it runs but `finally` blocks."""


def _argv(out, cache):
  return [*ARGS, '--out', str(out), '--set', f'cache_dir="{cache}"']


def _nar(argv):
  """(exit code or 'crash', stdout, stderr) of `nar ...` in this process."""
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
      code = cli.main(argv)
    except SystemExit as e:
      code = e.code
    except Crash:
      code = 'crash'
  return code, out.getvalue(), err.getvalue()


def _kind(fd, target):
  """Which of the trainer's writes this is."""
  name = os.path.basename(target)
  if '/checkpoints/best/' in target:
    return 'best-' + name.split('.')[0]
  if '/checkpoints/step-' in target:
    return 'step-' + name.split('.')[0]
  if name == 'metrics.jsonl':
    real = os.path.basename(os.readlink(f'/proc/self/fd/{fd}'))
    return 'metrics-rewrite' if real.startswith(storage.TMP_PREFIX) else 'metrics-append'
  return name.split('.')[0]       # config, results, cache files


@contextlib.contextmanager
def fault(kind, how, skip, rng):
  """Fails the (skip+1)-th write of `kind` in this process: 'crash' or 'enospc'
  after a random prefix of its bytes, 'eacces' before any."""
  real = storage._write_bytes
  seen = {'count': 0, 'fired': False}

  def faulty(fd, data, target):
    if not seen['fired'] and _kind(fd, target) == kind:
      seen['count'] += 1
      if seen['count'] > skip:
        seen['fired'] = True
        if how == 'eacces':
          raise OSError(errno.EACCES, os.strerror(errno.EACCES))
        real(fd, data[:rng.randrange(len(data)) if data else 0], target)
        if how == 'crash':
          raise Crash(target)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    real(fd, data, target)
  storage._write_bytes = faulty
  try:
    yield seen
  finally:
    storage._write_bytes = real


def _outcome(run_dir):
  """What must not depend on interruptions: final parameters, results, metrics."""
  (_, path), *_ = checkpoint.step_dirs(os.path.join(run_dir, 'checkpoints'))
  with np.load(os.path.join(path, checkpoint.STATE)) as z:
    params = {k: z[k] for k in z.files}
  results = json.load(open(os.path.join(run_dir, 'results.json')))
  metrics, problems = storage.read_jsonl(os.path.join(run_dir, 'metrics.jsonl'))
  assert not problems
  return params, {k: results[k] for k in ('best_val', 'test', 'steps', 'tested_step')}, metrics


def _assert_same(run_dir, reference):
  pa, ra, ma = _outcome(reference)
  pb, rb, mb = _outcome(run_dir)
  assert pa.keys() == pb.keys()
  for k in pa:
    np.testing.assert_array_equal(pa[k], pb[k])
  assert ra == rb and without_timings(ma) == without_timings(mb)


def _assert_nothing_saved_is_broken(run_dir):
  run = RunDir(str(run_dir))
  for _, path in checkpoint.step_dirs(run.checkpoints):
    assert checkpoint.verify(path) is None, path
  if os.path.isdir(run.best):
    assert checkpoint.verify(run.best) is None
  for path in (run.config, run.results):
    if os.path.exists(path):
      json.load(open(path))


@pytest.fixture(scope='module')
def env(tmp_path_factory):
  root = tmp_path_factory.mktemp('faults')
  cache = root / 'cache'
  reference = root / 'reference'
  code, out, err = _nar(_argv(reference, cache))
  assert code == 0, err
  assert f'run directory: {reference}' in out
  best = json.load(open(reference / 'results.json'))['best_val']['step']
  # The best step is not the last: its step checkpoint is kept only because it is
  # the best's (keep_checkpoints=1).
  assert best == 2 and [s for s, _ in checkpoint.step_dirs(reference / 'checkpoints')] == [4, 2]
  return {'root': root, 'cache': cache, 'reference': reference, 'best': best}


# (kind of write, occurrences let through first): in this order each fault finds
# the run where the previous ones left it (e.g. the rewrite of metrics.jsonl only
# happens when resuming, the second step checkpoint after the first is saved).
CHAIN = [('config', 0), ('metrics-append', 1), ('best-state', 0), ('metrics-rewrite', 0),
         ('step-state', 0), ('best-manifest', 0), ('step-manifest', 0), ('step-state', 1),
         ('metrics-append', 0), ('results', 0), ('metrics-append', 0)]
SHORT_CHAIN = [('config', 0), ('metrics-append', 2), ('best-state', 0), ('step-manifest', 0),
               ('metrics-rewrite', 0), ('results', 0)]


@pytest.mark.parametrize('how', ['crash', 'enospc', 'eacces'])
def test_faults_at_every_write_end_resumable_and_the_run_ends_identical(env, tmp_path, how):
  rng = random.Random(f'{how}-{SEED}')
  out = tmp_path / 'run'
  chain = SHORT_CHAIN if how == 'eacces' else CHAIN
  said = ''
  for k, (kind, skip) in enumerate(chain):
    if how == 'crash' and kind == 'metrics-append' and skip == 0:
      # Between two processes the best checkpoint goes bad as well.
      best = out / 'checkpoints' / 'best' / checkpoint.STATE
      raw = bytearray(best.read_bytes())
      raw[rng.randrange(len(raw))] ^= 0x40
      best.write_bytes(bytes(raw))
    with fault(kind, how, skip, rng) as seen:
      code, stdout, err = _nar(_argv(out, env['cache']))
    said += err
    assert seen['fired'], (k, kind, code, err)
    if how == 'crash':
      assert code == 'crash'
    else:
      # One line, exit 2, naming the file and the cause (after any warning of the start,
      # e.g. that the run starts over: warnings go to stderr too).
      lines = [x for x in err.strip().splitlines() if not x.startswith('warning: ')]
      assert code == 2 and len(lines) == 1 and 'Traceback' not in err, err
      named = {'config': 'config.json', 'results': 'results.json', 'metrics': 'metrics.jsonl',
               'best': '/checkpoints/best/', 'step': '/checkpoints/step-'}[kind.split('-')[0]]
      assert named in lines[0], (kind, lines[0])
      assert ('disk full' if how == 'enospc' else 'permission denied') in lines[0]
      assert 'run the same command again' in lines[0]
    _assert_nothing_saved_is_broken(out)
  code, stdout, err = _nar(_argv(out, env['cache']))
  assert code == 0, err
  if how == 'crash':
    assert 're-established from' in said       # the corrupted best
  _assert_same(out, env['reference'])


def _corrupt(path):
  raw = bytearray(open(path, 'rb').read())
  raw[len(raw) // 3] ^= 0xFF
  open(path, 'wb').write(bytes(raw))


@pytest.mark.parametrize('damage', ['flip', 'delete'])
def test_a_corrupt_or_deleted_best_checkpoint_is_reestablished(env, tmp_path, damage):
  out = tmp_path / 'run'
  shutil.copytree(env['reference'], out)
  best = out / 'checkpoints' / 'best'
  if damage == 'flip':
    _corrupt(best / checkpoint.STATE)
    # `nar evaluate` uses the same parameters from the best step's checkpoint.
    code, stdout, err = _nar(['evaluate', str(out), '--size', '8', '--samples', '8', '--quiet'])
    assert code == 0, err
    evaluated = json.loads(stdout)
    assert evaluated['checkpoint_step'] == env['best'] and 'step-00000002' in err
    # The test in results.json was of exactly these parameters (the best step's).
    tested = json.load(open(env['reference'] / 'results.json'))['test']
    assert {k: evaluated[k] for k in tested} == tested
  else:
    shutil.rmtree(best)
  code, stdout, err = _nar(_argv(out, env['cache']))
  assert code == 0, err
  assert 're-established from' in err and 'step-00000002' in err and stdout.count('\n') == 2
  assert checkpoint.verify(str(best)) is None
  _assert_same(out, env['reference'])


def test_best_and_its_step_both_corrupt_stop_saying_what_to_do(env, tmp_path):
  out = tmp_path / 'run'
  shutil.copytree(env['reference'], out)
  _corrupt(out / 'checkpoints' / 'best' / checkpoint.STATE)
  _corrupt(out / 'checkpoints' / 'step-00000002' / checkpoint.STATE)
  for argv in (_argv(out, env['cache']), ['evaluate', str(out), '--quiet']):
    code, _, err = _nar(argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and 'cannot be re-established' in lines[-1], err
  assert 'move' in lines[-1]
  # What it says to do: move the checkpoints away and run the same command again.
  shutil.move(out / 'checkpoints', tmp_path / 'old-checkpoints')
  code, _, err = _nar(_argv(out, env['cache']))
  assert code == 0, err
  _assert_same(out, env['reference'])


def test_ctrl_c_during_the_last_validation_is_not_swallowed(env, tmp_path, monkeypatch):
  out = tmp_path / 'run'
  real = RunDir.append_metrics

  def append(self, record):
    real(self, record)
    if record['kind'] == 'val' and record['step'] == 4:
      os.kill(os.getpid(), signal.SIGINT)
  monkeypatch.setattr(RunDir, 'append_metrics', append)
  code, _, err = _nar(_argv(out, env['cache']))
  assert code == 130 and len(err.splitlines()) == 1
  assert err.startswith('nar: stopped by SIGINT at step 4, the last: checkpoint saved at ')
  assert not (out / 'results.json').exists()
  monkeypatch.undo()
  code, _, err = _nar(_argv(out, env['cache']))
  assert code == 0, err
  _assert_same(out, env['reference'])


def test_torn_metrics_tail_from_a_kill_is_dropped_with_a_warning(env, tmp_path):
  """The state a kill -9 during an append leaves (no injection needed)."""
  out = tmp_path / 'run'
  shutil.copytree(env['reference'], out)
  with open(out / 'metrics.jsonl', 'ab') as f:
    f.write(b'{"kind": "train", "step": 5, "lo')
  code, stdout, err = _nar(_argv(out, env['cache']))
  assert code == 0, err
  assert 'is torn' in err and 'skipped' in err and 'is torn' not in stdout
  _assert_same(out, env['reference'])


def test_evaluate_reads_a_hint_relic_runs_best_checkpoint(env, tmp_path):
  """A Hint-ReLIC run's parameters include its critic: `nar evaluate` loads them."""
  import jax
  from nar import methods, storage as st
  from nar.config import TrainConfig
  from nar.sample import processed_spec
  from nar.train import build_network
  config = TrainConfig(algorithm='bfs', method='hint_relic', hidden=8, processor='mpnn',
                       batch_size=4, train_sizes=(4,), relic_critic_hidden=8, eval_batch_size=4,
                       out=str(tmp_path / 'run'), cache_dir=str(env['cache'])).validate()
  spec = processed_spec(config.algorithm)
  method = methods.get(config, spec)
  example = method.example_batch()
  net = build_network(config, spec, example)
  shapes = jax.eval_shape(lambda: method.init(net, jax.random.PRNGKey(1), example))
  params = jax.tree_util.tree_map(lambda x: np.full(x.shape, 0.01, x.dtype), shapes)
  assert any(k.startswith('relic_critic') for k in params)
  run = RunDir(config.out)
  os.makedirs(run.checkpoints)
  st.atomic_write_json(run.config, config.to_json())
  best = {'score': 0.5, 'step': 3}
  checkpoint.save(run.checkpoints, 'best', params, {'step': 3, 'best': best})
  code, stdout, err = _nar(['evaluate', config.out, '--size', '8', '--samples', '8', '--quiet'])
  assert code == 0, err
  assert json.loads(stdout)['checkpoint_step'] == 3


def test_evaluate_at_several_sizes_records_each_in_evaluations_json(env, tmp_path):
  """`nar evaluate RUN --size 8,12`: one result per size, each kept in the run's
  evaluations.json (where the report's OOD-vs-size curve reads it); a later
  evaluation of a size replaces that size's entry only."""
  from nar.evaluations import read_evaluations
  out = tmp_path / 'run'
  shutil.copytree(env['reference'], out)
  code, stdout, err = _nar(['evaluate', str(out), '--size', '8,12', '--samples', '8', '--quiet'])
  assert code == 0, err
  results = json.loads(stdout)
  assert [r['size'] for r in results] == [8, 12]
  assert all(r['checkpoint_step'] == env['best'] for r in results)
  recorded = read_evaluations(str(out))
  assert sorted(recorded) == [8, 12]
  assert [recorded[r['size']]['score'] for r in results] == [r['score'] for r in results]
  assert recorded[8]['num_samples'] == 8
  code, stdout, err = _nar(['evaluate', str(out), '--size', '8', '--samples', '4', '--quiet'])
  assert code == 0, err
  again = read_evaluations(str(out))
  assert again[8]['num_samples'] == 4 and again[12] == recorded[12]
  # Two runs at once: a list of both.
  other = tmp_path / 'other'
  shutil.copytree(env['reference'], other)
  code, stdout, err = _nar(['evaluate', str(out), str(other), '--size', '8', '--samples', '4',
                            '--quiet'])
  assert code == 0, err
  assert [r['run'] for r in json.loads(stdout)] == [str(out), str(other)]


def test_evaluation_batch_shrinks_to_the_free_memory_and_scores_do_not_change(env, tmp_path,
                                                                               monkeypatch):
  """The evaluation batch is capped by the free memory (same scores: the batch
  only groups samples); where not one sample fits, a clear error, not an
  out-of-memory kill."""
  from nar import eval_run     # where the evaluation batch is sized: the patches go there
  from nar.errors import RunError
  per_sample = eval_run.evaluation_bytes_per_sample(12, 16)
  assert eval_run.evaluation_batch_size(32, 12, 16, free_bytes=None) == 32
  assert eval_run.evaluation_batch_size(32, 12, 16, free_bytes=10 * per_sample) == 5
  assert eval_run.evaluation_batch_size(32, 12, 16, devices=2, free_bytes=3 * per_sample) == 2
  assert eval_run.evaluation_batch_size(4, 12, 16, free_bytes=10 ** 12) == 4
  with pytest.raises(RunError, match=r'evaluating problems of 12 nodes at hidden 16 needs'):
    eval_run.evaluation_batch_size(32, 12, 16, free_bytes=per_sample)
  out = tmp_path / 'run'
  shutil.copytree(env['reference'], out)
  hidden = json.loads((out / 'config.json').read_text())['hidden']
  full = eval_run.evaluate_run(str(out), size=12, progress=False, num_samples=8, record=False)
  seen = []
  real = eval_run.evaluation_batch_size
  monkeypatch.setattr(eval_run, 'evaluation_batch_size',
                      lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
  monkeypatch.setattr(eval_run, 'free_memory_bytes',
                      lambda device=None: int(3 * eval_run.evaluation_bytes_per_sample(12, hidden)
                                              / eval_run.EVAL_MEMORY_SHARE))
  small = eval_run.evaluate_run(str(out), size=12, progress=False, num_samples=8, record=False)
  assert seen == [3] and small['score'] == full['score']
  monkeypatch.setattr(eval_run, 'free_memory_bytes', lambda device=None: 1000)
  code, _, err = _nar(['evaluate', str(out), '--size', '12', '--samples', '8',
                       '--quiet'])
  assert code == 2 and 'needs about' in err and 'Traceback' not in err


def test_evaluate_prints_only_its_json_on_stdout_with_progress_on_stderr(env, tmp_path):
  """`nar evaluate RUN | python -m json.tool` works: bars and warnings go to stderr,
  each warning once."""
  out = tmp_path / 'run'
  shutil.copytree(env['reference'], out)
  cache = tmp_path / 'cache'
  shutil.copytree(env['cache'], cache)
  config = json.load(open(out / 'config.json'))
  config['cache_dir'] = str(cache)
  (out / 'config.json').write_text(json.dumps(config))
  for path in cache.glob('bfs-test-n8-*.npz'):
    _corrupt(path)                    # rebuilt, with a warning
  code, stdout, err = _nar(['evaluate', str(out), '--size', '8', '--samples', '8'])
  assert code == 0, err
  assert json.loads(stdout)['size'] == 8
  assert err.count('ignored and rebuilt') == 1 and 'warning' not in stdout


@pytest.mark.parametrize('why', ['read-only', 'unreadable record'])
def test_evaluating_a_run_that_cannot_record_prints_its_scores_and_says_so(env, tmp_path,
                                                                           monkeypatch, why):
  """An archived (read-only) run, or one whose evaluations.json is not a record: the
  scores are printed, one line says they were not saved, and nothing is lost."""
  out = tmp_path / 'run'
  shutil.copytree(env['reference'], out)
  record = out / 'evaluations.json'
  if why == 'read-only':
    real = storage._write_bytes

    def read_only(fd, data, target):
      if str(out) in target:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
      real(fd, data, target)
    monkeypatch.setattr(storage, '_write_bytes', read_only)
  else:
    record.write_text('{"16": {"score": 0.5}, "torn')
  before = record.read_bytes() if record.exists() else None
  code, stdout, err = _nar(['evaluate', str(out), '--size', '8', '--samples', '8', '--quiet'])
  assert code == 0, err
  tested = json.load(open(env['reference'] / 'results.json'))['test']
  assert json.loads(stdout)['score'] == tested['score']
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('note: these scores were not saved'), err
  assert ('read-only file system' if why == 'read-only' else
          'is not a record of evaluations') in lines[0]
  assert (record.read_bytes() if record.exists() else None) == before


def test_a_record_of_evaluations_keeps_what_it_held(env, tmp_path):
  """Entries of other sizes, even ones this version does not read, stay as they were."""
  out = tmp_path / 'run'
  shutil.copytree(env['reference'], out)
  (out / 'evaluations.json').write_text('{"16": {"score": 0.5, "mine": 1}, "notes": "x"}')
  code, _, err = _nar(['evaluate', str(out), '--size', '8', '--samples', '8', '--quiet'])
  assert code == 0, err
  kept = json.load(open(out / 'evaluations.json'))
  assert kept['16'] == {'score': 0.5, 'mine': 1} and kept['notes'] == 'x' and '8' in kept
