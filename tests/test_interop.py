"""dm-clrs interoperability, through dm-clrs itself: a model trained here,
exported, restored by `BaselineModel` predicts what it predicts here; a file
written by `BaselineModel.save_model` evaluates here with dm-clrs's own score."""

import os

import clrs
import jax
import numpy as np
import pytest
from clrs._src import baselines

from nar import data as data_lib
from nar.cli import main
from nar.interop import evaluate_params, load_dm_clrs_params
from nar.sample import processed_spec
from nar.train import train
from tests.test_model import _feedback
from tests.test_train import tiny

H = 8


def _dm_clrs_model(spec, fb, path):
  model = baselines.BaselineModel(
      spec, fb, clrs.get_processor_factory('triplet_gmpnn', use_ln=True, nb_triplet_fts=8),
      hidden_dim=H, encode_hints=True, decode_hints=True, encoder_init='xavier_on_scalars',
      learning_rate=1e-3, grad_clip_max_norm=1.0, checkpoint_path=str(path))
  model.init(fb.features, 5)
  return model


def _test_split(tmp_path, size=8, samples=8):
  return data_lib.load_split('bfs', 'test', size=size, num_samples=samples,
                             cache_dir=str(tmp_path / 'cache'), progress=False)


def _dm_clrs_score(model, split, spec):
  fb = _feedback(split, spec)
  preds, _ = model.predict(jax.random.PRNGKey(0), fb.features)
  return clrs.evaluate(fb.outputs, preds)['score']


def test_exported_run_restores_in_dm_clrs(tmp_path):
  run = tmp_path / 'run'
  train(tiny(run, tmp_path / 'cache', hidden=H, steps=3, eval_every=3), progress=False)
  assert main(['export', str(run), str(tmp_path / 'dm' / 'params.pkl')]) == 0
  spec = processed_spec('bfs')
  split = _test_split(tmp_path)
  model = _dm_clrs_model(spec, _feedback(split, spec), tmp_path / 'dm')
  model.restore_model('params.pkl')
  ours = load_dm_clrs_params(str(tmp_path / 'dm' / 'params.pkl'))
  for module, leaves in ours.items():
    for k, v in leaves.items():
      np.testing.assert_array_equal(np.asarray(model.params[module][k]), v)
  # dm-clrs's prediction with the restored parameters scores what ours does.
  here = evaluate_params(ours, 'bfs', size=8, num_samples=8, cache_dir=str(tmp_path / 'cache'))
  assert here['score'] == pytest.approx(_dm_clrs_score(model, split, spec), abs=1e-6)


def test_dm_clrs_trained_file_evaluates_here_with_its_score(tmp_path):
  spec = processed_spec('bfs')
  split = _test_split(tmp_path)
  train_batch = data_lib.TrainStream('bfs', 0, 8, (8,)).batch(0)
  model = _dm_clrs_model(spec, _feedback(train_batch, spec), tmp_path / 'dm')
  for step in range(3):
    model.feedback(jax.random.PRNGKey(step), _feedback(train_batch, spec))
  model.save_model('trained.pkl')
  path = str(tmp_path / 'dm' / 'trained.pkl')
  here = evaluate_params(load_dm_clrs_params(path), 'bfs', size=8, num_samples=8,
                         cache_dir=str(tmp_path / 'cache'))
  assert here['hidden'] == H
  assert here['score'] == pytest.approx(_dm_clrs_score(model, split, spec), abs=1e-6)


def test_foreign_files_are_one_line_errors(tmp_path, capsys):
  bad = tmp_path / 'bad.pkl'
  bad.write_bytes(b'not a pickle')
  assert main(['evaluate', '--dm-clrs-params', str(bad), '--algorithms', 'bfs']) == 2
  assert 'not a dm-clrs parameter file' in capsys.readouterr().err
  assert main(['evaluate', '--dm-clrs-params', str(tmp_path / 'none.pkl'),
               '--algorithms', 'bfs']) == 2
  assert main(['export', str(tmp_path), str(tmp_path / 'x.pkl')]) == 2
  assert not os.path.exists(tmp_path / 'x.pkl')
