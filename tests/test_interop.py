"""dm-clrs interoperability, through dm-clrs itself: a model trained here,
exported, restored by `BaselineModel` predicts what it predicts here; a file
written by `BaselineModel.save_model` evaluates here with dm-clrs's own score."""

import json
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


# ------------------------------------------------ files of several algorithms
import pickle  # noqa: E402

from nar.interop import evaluate_params_sizes, read_dm_clrs_file  # noqa: E402

PAIR = ('bfs', 'insertion_sort')


def _split_of(tmp_path, algorithm, size=8, samples=8):
  return data_lib.load_split(algorithm, 'test', size=size, num_samples=samples,
                             cache_dir=str(tmp_path / 'cache'), progress=False)


def _dm_clrs_multi_model(specs, fbs, path):
  model = baselines.BaselineModel(
      list(specs), list(fbs),
      clrs.get_processor_factory('triplet_gmpnn', use_ln=True, nb_triplet_fts=8),
      hidden_dim=H, encode_hints=True, decode_hints=True, encoder_init='xavier_on_scalars',
      learning_rate=1e-3, grad_clip_max_norm=1.0, checkpoint_path=str(path))
  model.init([fb.features for fb in fbs], 5)
  return model


def _dm_clrs_scores(model, splits, specs):
  out = {}
  for i, (name, split, spec) in enumerate(zip(PAIR, splits, specs)):
    fb = _feedback(split, spec)
    preds, _ = model.predict(jax.random.PRNGKey(0), fb.features, algorithm_index=i)
    out[name] = clrs.evaluate(fb.outputs, preds)['score']
  return out


def test_a_two_algorithm_file_of_dm_clrs_evaluates_here_with_its_scores(tmp_path, capsys):
  specs = [processed_spec(a) for a in PAIR]
  splits = [_split_of(tmp_path, a) for a in PAIR]
  model = _dm_clrs_multi_model(specs, [_feedback(s, sp) for s, sp in zip(splits, specs)],
                               tmp_path / 'dm')
  # Away from the initialisation (dm-clrs 2.0.3's multi-spec `feedback` fails in its
  # optimizer-state filter with this Optax), so that the scores are not an untrained net's.
  leaves, treedef = jax.tree_util.tree_flatten(model.params)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  model.params = jax.tree_util.tree_unflatten(
      treedef, [x + 0.5 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
  model.save_model('two.pkl')
  path = str(tmp_path / 'dm' / 'two.pkl')
  assert read_dm_clrs_file(path).algorithms == 2
  expected = _dm_clrs_scores(model, splits, specs)
  here, = evaluate_params_sizes(read_dm_clrs_file(path), list(PAIR), [8], num_samples=8,
                                cache_dir=str(tmp_path / 'cache'))
  assert here['algorithms'] == list(PAIR) and here['hidden'] == H
  for name in PAIR:
    assert here['per_algorithm'][name]['score'] == pytest.approx(expected[name], abs=1e-6)
  assert here['score'] == pytest.approx(sum(expected.values()) / 2, abs=1e-6)
  # The command line: the algorithms in the file's order, space- or comma-separated.
  os.environ['NAR_CACHE'] = str(tmp_path / 'cache')
  try:
    assert main(['evaluate', '--dm-clrs-params', path, '--algorithms', 'bfs,insertion_sort',
                 '--size', '8', '--samples', '8', '--quiet']) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed['per_algorithm']['insertion_sort']['score'] == pytest.approx(
        expected['insertion_sort'], abs=1e-6)
    assert main(['evaluate', '--dm-clrs-params', path, '--algorithms', 'bfs', '--quiet']) == 2
    err = capsys.readouterr().err.strip()
    assert 'holds parameters of 2 algorithm(s)' in err and len(err.splitlines()) == 1
  finally:
    del os.environ['NAR_CACHE']


def test_a_multi_task_run_exported_restores_in_dm_clrs_and_evaluates_back(tmp_path, capsys):
  run = tmp_path / 'run'
  train(tiny(run, tmp_path / 'cache', algorithm=','.join(PAIR), hidden=H, steps=4,
             eval_every=2, train_sizes=(4,)), progress=False)
  file = tmp_path / 'dm' / 'params.pkl'
  assert main(['export', str(run), str(file)]) == 0
  capsys.readouterr()
  specs = [processed_spec(a) for a in PAIR]
  splits = [_split_of(tmp_path, a) for a in PAIR]
  model = _dm_clrs_multi_model(specs, [_feedback(s, sp) for s, sp in zip(splits, specs)],
                               tmp_path / 'dm')
  model.restore_model('params.pkl')
  ours = load_dm_clrs_params(str(file))
  assert set(ours) == set(model.params)
  for module, leaves in ours.items():
    for k, v in leaves.items():
      np.testing.assert_array_equal(np.asarray(model.params[module][k]), v)
  expected = _dm_clrs_scores(model, splits, specs)
  # Back: the exported file names its algorithms and network itself.
  assert main(['evaluate', '--dm-clrs-params', str(file), '--size', '8', '--samples', '8',
               '--quiet']) == 0
  here = json.loads(capsys.readouterr().out)
  for name in PAIR:
    assert here['per_algorithm'][name]['score'] == pytest.approx(expected[name], abs=1e-6)
  # And it is the run's own evaluation of its best checkpoint.
  assert main(['evaluate', str(run), '--size', '8', '--samples', '8', '--quiet']) == 0
  run_eval = json.loads(capsys.readouterr().out)
  for name in PAIR:
    assert run_eval['per_algorithm'][name]['score'] == here['per_algorithm'][name]['score']
  assert main(['evaluate', '--dm-clrs-params', str(file), '--algorithms', 'insertion_sort,bfs',
               '--quiet']) == 2
  assert 'holds bfs, insertion_sort (as exported)' in capsys.readouterr().err


def test_an_exported_hint_relic_run_evaluates_as_its_run_does(tmp_path, capsys):
  """A method's own parameters (Hint-ReLIC's critics) are no part of the file;
  its processor is read from the file."""
  run = tmp_path / 'run'
  train(tiny(run, tmp_path / 'cache', method='hint_relic', processor='mpnn', hidden=H, steps=2,
             eval_every=2, train_sizes=(4,), relic_critic_hidden=8), progress=False)
  file = tmp_path / 'hr.pkl'
  assert main(['export', str(run), str(file)]) == 0
  capsys.readouterr()
  assert not any('relic' in m for m in load_dm_clrs_params(str(file)))
  assert main(['evaluate', '--dm-clrs-params', str(file), '--size', '8', '--samples', '8',
               '--quiet']) == 0
  from_file = json.loads(capsys.readouterr().out)
  assert main(['evaluate', str(run), '--size', '8', '--samples', '8', '--quiet']) == 0
  from_run = json.loads(capsys.readouterr().out)
  assert from_file['score'] == from_run['score'] and from_file['algorithm'] == 'bfs'


@pytest.mark.parametrize('state, expected', [
    ({'params': {'a': [1, 2, 3]}, 'opt_state': None}, 'module a holds [1, 2, 3], not a mapping'),
    ({'params': {'net/algo_0_x_enc_linear': {'w': 'text'}}}, "net/algo_0_x_enc_linear/w is 'text'"),
    ({'params': {'net/algo_0_x_enc_linear': {'w': [object()]}}}, 'not a numeric array'),
    ({'params': {'net/algo_0_x_enc_linear': {'w': np.zeros(0)}}}, 'not a numeric array'),
    ({'params': {'net/algo_0_x_enc_linear': {}}}, 'not a mapping of parameters'),
    ({'params': {}}, "'params' are empty"),
    ({'params': {3: {'w': np.zeros(2)}}}, 'a module name is 3'),
    ({'params': {'net/processor': {'w': np.zeros(2)}}}, 'no encoder or decoder'),
    ({'params': {'net/algo_1_x_enc_linear': {'w': np.zeros(2)}}}, 'numbered [1], not 0..0'),
    ({'params': {'net/algo_0_x_enc_linear': {'w': np.zeros(2)}}, 'nar': {'format': 7}},
     "'nar' entry is not one `nar export` writes"),
    ({'params': {'net/algo_0_x_enc_linear': {'w': np.zeros(2)}},
      'nar': {'format': 1, 'config': {'algorithm': 'bfs'}}}, 'lacks method'),
    ({'params': {'net/algo_0_x_enc_linear': {'w': np.zeros(2)}},
      'nar': {'format': 1, 'config': {'algorithm': 'bfs,dfs', 'method': 'baseline'}}},
     'names 2 algorithm(s), its parameters are of 1'),
    ([1, 2], "no 'params' mapping"),
])
def test_odd_contents_are_one_line_naming_the_file(tmp_path, capsys, state, expected):
  path = tmp_path / 'odd.pkl'
  path.write_bytes(pickle.dumps(state))
  assert main(['evaluate', '--dm-clrs-params', str(path), '--algorithms', 'bfs']) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and str(path) in err and expected in err, err
  assert 'Traceback' not in err
