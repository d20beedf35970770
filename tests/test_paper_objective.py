"""The paper's Hint-ReLIC objective is the default; its variants are named;
saved configurations migrate; the loss parts' gradient shares; the invariance
metrics; the size-matched control."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nar import methods, registry
from nar.config import CONFIG_SCHEMA, TrainConfig, config_conflicts, migrate
from nar.sample import processed_spec
from nar.train import build_network, gradient_shares, make_part_gradient_norms
from tests.helpers import make_samples

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_default_hint_relic_is_the_papers_objective():
  paper = TrainConfig(algorithm='insertion_sort', method='hint_relic').validate().as_trained()
  assert (paper.relic_beta, paper.relic_twin, paper.relic_contrast) == (0.0, 'step', True)
  supervised = TrainConfig(algorithm='insertion_sort',
                           method='hint_relic_supervised').validate().as_trained()
  assert (supervised.relic_beta, supervised.relic_twin) == (1.0, 'rollout')
  twins = TrainConfig(algorithm='insertion_sort', method='twins_only').validate().as_trained()
  assert (twins.relic_contrast, twins.relic_beta) == (False, 1.0)
  # config.json is the configuration as trained: a twins_only file says no contrast.
  assert twins.to_json()['relic_contrast'] is False and twins.to_json()['schema'] == CONFIG_SCHEMA


def _item(method_name='hint_relic', **kw):
  cfg = TrainConfig(algorithm='insertion_sort', method=method_name, hidden=8, batch_size=2,
                    relic_critic_hidden=8, relic_pairs=3, **kw).validate().as_trained()
  spec = processed_spec('insertion_sort')
  method = methods.get(cfg, spec)
  item = method.make_item(make_samples('insertion_sort', 5, 2, seed=4), step=0)
  net = build_network(cfg, spec, item[0])
  params = method.init(net, jax.random.PRNGKey(0), item[0])
  return cfg, method, item, net, params


def test_the_papers_objective_has_no_gradient_from_the_twins_supervised_loss():
  cfg, method, item, net, params = _item()
  assert len(item) == 3                     # no twin batch to supervise is even built
  loss_fn = method.loss_fn(net)
  _, terms = loss_fn(params, None, *item)
  assert 'sup_twin' not in terms and float(terms['relic_anchors']) > 0
  # Given the twin batch anyway, the objective (beta = 0) takes no gradient from it.
  twin_batch = _item(relic_beta=1.0)[2][3]
  grad = jax.jit(jax.grad(lambda p, *a: loss_fn(p, None, *a)[0]))
  without, with_twin = grad(params, *item), grad(params, *item, twin_batch)
  for a, b in zip(jax.tree_util.tree_leaves(without), jax.tree_util.tree_leaves(with_twin)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
  # and the supervised variant's does differ: the test can fail.
  variant = dataclasses.replace(cfg, relic_beta=1.0)
  loss_b = methods.get(variant, method.spec).loss_fn(net)
  g_b = jax.jit(jax.grad(lambda p, *a: loss_b(p, None, *a)[0]))(params, *item, twin_batch)
  assert any(not np.allclose(a, b) for a, b in zip(jax.tree_util.tree_leaves(without),
                                                   jax.tree_util.tree_leaves(g_b)))


def test_loss_parts_sum_to_the_loss_and_their_gradient_norms():
  cfg, method, item, net, params = _item(relic_lambda=0.5)
  assert method.loss_parts == ('supervised', 'contrast', 'kl')
  loss_fn = method.loss_fn(net)
  total, terms = loss_fn(params, None, *item)
  parts = [float(terms[f'part_{p}']) for p in method.loss_parts]
  assert sum(parts) == pytest.approx(float(total), rel=1e-5)
  assert float(terms['part_contrast']) == pytest.approx(0.5 * float(terms['relic_contrast']))
  norms = make_part_gradient_norms(loss_fn, method.loss_parts)(params, None, *item)
  contrast_only = jax.grad(lambda p: loss_fn(p, None, *item)[1]['part_contrast'])(params)
  leaves = jax.tree_util.tree_leaves(contrast_only)
  expected = float(jnp.sqrt(sum(jnp.sum(x ** 2) for x in leaves)))
  assert float(norms['contrast']) == pytest.approx(expected, rel=1e-4)
  record = gradient_shares(norms)
  assert sum(record[f'grad_share_{p}'] for p in method.loss_parts) == pytest.approx(1.0)
  assert 0 < record['grad_share_contrast'] < 1
  # No invariance term, one part: nothing to share.
  assert _item('twins_only')[1].loss_parts == ()


def test_version_1_configs_migrate_to_what_they_trained():
  v1 = TrainConfig(algorithm='dfs', method='hint_relic').to_json()
  del v1['schema']
  v1.update(relic_beta=1.0, relic_twin='rollout')
  assert TrainConfig.from_json(v1).method == 'hint_relic_supervised'
  # A version-1 file without the settings had the defaults of its time.
  older = dict(v1)
  del older['relic_beta'], older['relic_twin']
  assert TrainConfig.from_json(older).method == 'hint_relic_supervised'
  # A version-1 hint_relic run of the paper's settings stays hint_relic.
  paper_v1 = {**v1, 'relic_beta': 0.0, 'relic_twin': 'step'}
  assert TrainConfig.from_json(paper_v1).method == 'hint_relic'
  # A version-1 twins_only file was saved before its fixed values: read as trained.
  twins_v1 = {**v1, 'method': 'twins_only', 'relic_contrast': True}
  assert TrainConfig.from_json(twins_v1).relic_contrast is False
  # ... and it resumes with today's command for it.
  assert not config_conflicts(twins_v1, TrainConfig(algorithm='dfs', method='twins_only'))
  assert not config_conflicts(v1, TrainConfig(algorithm='dfs', method='hint_relic_supervised'))
  assert config_conflicts(v1, TrainConfig(algorithm='dfs', method='hint_relic'))
  # Version 2 is read as written: an explicit supervised hint_relic stays hint_relic.
  v2 = TrainConfig(algorithm='dfs', method='hint_relic', relic_beta=1.0,
                   relic_twin='rollout').to_json()
  assert TrainConfig.from_json(v2).method == 'hint_relic'
  with pytest.raises(Exception, match='newer than this version'):
    TrainConfig.from_json({**v2, 'schema': CONFIG_SCHEMA + 1})


def test_every_committed_configuration_still_loads():
  paths = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(ROOT, 'results'))
           for f in fs if f == 'config.json']
  assert paths
  for path in paths:
    with open(path) as f:
      saved = json.load(f)
    config = TrainConfig.from_json(saved)
    assert migrate(saved)['method'] == config.method


def test_size_matched_control_draws_at_the_twins_sizes():
  from nar.hint_relic import HintReLIC
  from nar.size_matched import SizeMatched
  spec = processed_spec('find_maximum_subarray_kadane')
  cfg = TrainConfig(algorithm='find_maximum_subarray_kadane', method='size_matched', hidden=8,
                    batch_size=3, train_sizes=(8,)).validate().as_trained()
  control = methods.get(cfg, spec)
  assert isinstance(control, SizeMatched)
  relic = HintReLIC(dataclasses.replace(cfg, method='hint_relic', relic_twin='rollout'), spec)
  _, twins, _ = relic.batch(5)
  x, fresh = control.batch(5)
  twin_sizes = sorted(int(m.sum()) for m in np.asarray(twins.node_mask))
  assert sorted(int(m.sum()) for m in np.asarray(fresh.node_mask)) == twin_sizes
  assert max(twin_sizes) > 8                            # the twins are larger
  # fresh samples, not the twins: other inputs
  assert not np.array_equal(np.asarray(fresh.inputs['key']), np.asarray(twins.inputs['key']))
  net = build_network(cfg, spec, x)
  params = control.init(net, jax.random.PRNGKey(0), x)
  total, terms = control.loss_fn(net)(params, None, x, fresh)
  assert float(total) == pytest.approx(float(terms['sup_x']) + float(terms['sup_fresh']), rel=1e-5)
  assert registry.method('size_matched').control


def test_registry_knows_what_each_method_class_supports():
  for name, entry in registry.methods().items():
    assert entry.multi_task == entry.factory().supports_multi_task, name


@pytest.mark.parametrize('method', ['hint_relic_supervised', 'size_matched'])
def test_the_variant_and_the_control_train_end_to_end(tmp_path, method):
  from nar.train import train
  from tests.test_train import tiny
  results = train(tiny(tmp_path / 'run', tmp_path / 'cache', algorithm='insertion_sort',
                       method=method, steps=2, eval_every=2, train_sizes=(5,),
                       relic_critic_hidden=8), progress=False)
  saved = json.load(open(tmp_path / 'run' / 'config.json'))
  assert saved['method'] == method and saved['schema'] == CONFIG_SCHEMA
  if method == 'hint_relic_supervised':
    assert (saved['relic_beta'], saved['relic_twin']) == (1.0, 'rollout')
  records = [json.loads(x) for x in open(tmp_path / 'run' / 'metrics.jsonl')]
  train_terms = [r for r in records if r['kind'] == 'train']
  assert train_terms and ('sup_twin' if method != 'size_matched' else 'sup_fresh') in train_terms[-1]
  assert results['versions']['backend'] == 'cpu' and 'commit' in results['versions']['code']
