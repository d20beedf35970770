"""End to end: a tiny run trains, validates, tests, writes its files, and resumes exactly."""

import json
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from nar import checkpoint, methods
from nar import train as train_module
from nar.config import TrainConfig
from nar.train import RunError, train


def tiny(out, cache, **kw):
  base = dict(algorithm='bfs', steps=6, hidden=8, batch_size=4, eval_every=3, log_every=1,
              train_sizes=(4, 5), val_samples=8, test_samples=8, test_size=8, eval_batch_size=4,
              out=str(out), cache_dir=str(cache), seed=3)
  base.update(kw)
  return TrainConfig(**base).validate()


def _final_params(out):
  (_, path), *_ = checkpoint.step_dirs(os.path.join(out, 'checkpoints'))
  with np.load(os.path.join(path, checkpoint.STATE)) as z:
    return {k: z[k] for k in z.files}


def test_tiny_run_writes_results_and_resumes_exactly(tmp_path):
  cache = tmp_path / 'cache'
  full = train(tiny(tmp_path / 'full', cache), progress=False)
  assert 0.0 <= full['test_score'] <= 1.0
  assert full['best_val']['step'] in (3, 6)
  lines = [json.loads(x) for x in open(tmp_path / 'full' / 'metrics.jsonl')]
  assert [r['step'] for r in lines if r['kind'] == 'val'] == [3, 6]
  assert os.path.isdir(tmp_path / 'full' / 'checkpoints' / 'best')
  saved = json.load(open(tmp_path / 'full' / 'results.json'))
  assert saved['versions']['dm-clrs'] == '2.0.3' and saved['config']['hidden'] == 8

  # Interrupted after step 3 (its checkpoint), then resumed: identical end state.
  part = tiny(tmp_path / 'resumed', cache)
  assert train(part, progress=False, stop_after=4) == {'stopped_at': 4}
  resumed = train(tiny(tmp_path / 'resumed', cache), progress=False)
  a, b = _final_params(tmp_path / 'full'), _final_params(tmp_path / 'resumed')
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert resumed['test'] == full['test']
  # Its cost covers both processes: in each, the first step of each training size
  # (2 here) compiles and is counted as compilation; the other steps are timed.
  assert (full['timings']['processes'], full['timings']['steps_timed']) == (1, 6 - 2)
  assert (resumed['timings']['processes'], resumed['timings']['steps_timed']) == (2, 4 - 2)
  val_a = [r for r in lines if r['kind'] == 'val']
  val_b = [json.loads(x) for x in open(tmp_path / 'resumed' / 'metrics.jsonl')]
  assert val_a == [r for r in val_b if r['kind'] == 'val']


def test_run_whose_checkpoints_were_lost_starts_over_keeping_its_old_records(tmp_path,
                                                                             monkeypatch):
  """The checkpoints directory gone (git-ignored, not carried to a new machine), the
  records of the lost steps are kept aside, with a warning, and the restart is exact."""
  cache = tmp_path / 'cache'
  full = train(tiny(tmp_path / 'full', cache), progress=False)
  assert train(tiny(tmp_path / 'r', cache), progress=False, stop_after=4) == {'stopped_at': 4}
  before = open(tmp_path / 'r' / 'metrics.jsonl').read()
  shutil.rmtree(tmp_path / 'r' / 'checkpoints')
  said = []
  monkeypatch.setattr(train_module._Reporting, 'warn', lambda self, msg: said.append(msg))
  again = train(tiny(tmp_path / 'r', cache), progress=False)
  assert again['test'] == full['test']
  assert open(tmp_path / 'r' / 'metrics-before-restart.jsonl').read() == before
  assert any('no checkpoint to resume from' in m and 'step 4' in m for m in said), said
  val = [json.loads(x) for x in open(tmp_path / 'r' / 'metrics.jsonl')]
  assert [r['step'] for r in val if r['kind'] == 'val'] == [3, 6]
  # Lost a second time: the first start's records stay, the second's are added.
  second = open(tmp_path / 'r' / 'metrics.jsonl').read()
  train_module.RunDir(str(tmp_path / 'r')).truncate_metrics(0, report=said.append)
  assert open(tmp_path / 'r' / 'metrics-before-restart.jsonl').read() == before + second


def test_run_directory_of_another_configuration_is_refused(tmp_path):
  train(tiny(tmp_path / 'r', tmp_path / 'c', steps=1, eval_every=1), progress=False)
  with pytest.raises(RunError, match='hidden'):
    train(tiny(tmp_path / 'r', tmp_path / 'c', steps=1, eval_every=1, hidden=16),
          progress=False)


def test_non_finite_loss_stops_with_a_clear_message(tmp_path):
  class Broken(methods.Baseline):
    def loss_fn(self, net):
      inner = super().loss_fn(net)

      def loss(params, rng, batch):
        total, terms = inner(params, rng, batch)
        return total * jnp.nan, terms
      return loss

  with pytest.raises(RunError, match='non-finite loss at step 0'):
    train(tiny(tmp_path / 'r', tmp_path / 'c'), progress=False,
          method_factory=lambda c, s: Broken(c, s))


def test_run_saved_before_a_setting_existed_resumes():
  """A config.json without a newer field means that field's default, not a conflict."""
  from nar.config import TrainConfig, config_conflicts
  new = TrainConfig(algorithm='bfs', hidden=8).validate()
  saved = new.to_json()
  del saved['precision']
  assert config_conflicts(saved, new) == []
  assert config_conflicts(saved, TrainConfig(algorithm='bfs', hidden=8,
                                             precision='bfloat16').validate())


def test_runs_saved_before_remat_read_as_stored_activations_and_resume_with_either():
  """Runs saved before `remat` existed stored every step's activations: they read
  as 'none' (`nar run` repeats them as they ran); a resume may switch, since
  the gradient is the same (tests/test_model.py)."""
  from nar.config import TrainConfig, config_conflicts
  old = TrainConfig(algorithm='bfs', hidden=8).to_json()
  del old['remat'], old['schema']     # as a file of schema 1 was saved
  assert TrainConfig.from_json(old).remat == 'none'
  assert TrainConfig(algorithm='bfs').remat == 'full'
  for remat in ('none', 'full'):
    assert config_conflicts(old, TrainConfig(algorithm='bfs', hidden=8, remat=remat)) == []


def test_length_groups_are_automatic_where_trajectory_lengths_vary_and_resumable():
  """length_groups 0 (the default): on a CPU, 4 groups for bfs, whose batches mix
  trajectory lengths, none for insertion_sort (every trajectory n steps); runs
  saved before the setting read as the default and may resume with any value."""
  import jax
  from nar.config import config_conflicts
  from nar.train import build_network
  from tests.helpers import make_batch
  for algorithm, guarded in (('bfs', True), ('insertion_sort', False)):
    batch, spec = make_batch(algorithm, 8, 8, seed=1)
    config = TrainConfig(algorithm=algorithm, hidden=8)
    assert config.length_groups == 0
    net = build_network(config, spec, batch)
    params = net.init(jax.random.PRNGKey(0), batch.inputs, batch.hints, batch.lengths,
                      batch.node_mask, is_training=False)
    jaxpr = str(jax.make_jaxpr(lambda p: net.apply(
        p, None, batch.inputs, batch.hints, batch.lengths, batch.node_mask,
        is_training=False))(params))
    assert ('cond[' in jaxpr) == (guarded and jax.default_backend() == 'cpu'), algorithm
  old = TrainConfig(algorithm='bfs', hidden=8).to_json()
  del old['length_groups']
  assert TrainConfig.from_json(old).length_groups == 0
  for groups in (0, 1, 8):
    assert config_conflicts(old, TrainConfig(algorithm='bfs', hidden=8,
                                             length_groups=groups)) == []


def test_a_second_process_on_the_same_run_is_refused(tmp_path):
  import subprocess
  import sys
  from nar.train import RunDir
  run = RunDir(str(tmp_path / 'r'))
  run.prepare(tiny(tmp_path / 'r', tmp_path / 'c'))          # holds the lock
  code = ('import sys; from nar.train import RunDir, RunError\n'
          f'try: RunDir({str(tmp_path / "r")!r}).lock()\n'
          'except RunError as e: print(e); sys.exit(3)\n')
  p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
  assert p.returncode == 3 and 'in use by another process' in p.stdout
  run.unlock()
  p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
  assert p.returncode == 0, p.stdout + p.stderr


def test_the_compilation_cache_goes_where_the_environment_says(tmp_path, monkeypatch):
  import jax
  from nar.train import enable_compilation_cache
  before = jax.config.jax_compilation_cache_dir
  try:
    monkeypatch.setenv('NAR_COMPILE_CACHE', '1')
    enable_compilation_cache(str(tmp_path / 'run'))
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / 'run' / 'xla')
    monkeypatch.setenv('NAR_COMPILE_CACHE', str(tmp_path / 'shared'))
    enable_compilation_cache(str(tmp_path / 'run'))
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / 'shared')
    monkeypatch.setenv('NAR_COMPILE_CACHE', 'off')
    enable_compilation_cache(str(tmp_path / 'other'))
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / 'shared')
  finally:
    jax.config.update('jax_compilation_cache_dir', before)
