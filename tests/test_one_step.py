"""One-step twins: the model's single step equals the rollout's step; the one-step
twin side of Hint-ReLIC (masking, the no-added-node identity, gradients, loss)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nar import methods
from nar.config import TrainConfig, config_conflicts
from nar.hint_relic import PairData, TwinSteps, one_step_reps, twin_steps
from nar.model import dense_data, make_step_net, nb_dims_of, net_config_of, soft_hints
from nar.sample import processed_spec
from nar.train import build_network
from tests.helpers import make_batch, make_samples


def _nets(algorithm, n=5, count=3, num_nodes=None, hidden=8):
  batch, spec = make_batch(algorithm, n, count, seed=1, num_nodes=num_nodes)
  cfg = TrainConfig(algorithm=algorithm, hidden=hidden).validate()
  net = build_network(cfg, spec, batch)
  step = make_step_net(spec, nb_dims_of(batch.inputs, batch.hints, batch.outputs),
                       net_config_of(cfg))
  params = net.init(jax.random.PRNGKey(0), batch.inputs, batch.hints, batch.lengths,
                    batch.node_mask, is_training=True)
  return cfg, spec, batch, net, step, params


def _close(a, b):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('algorithm', ['insertion_sort', 'dfs'])
def test_one_step_reproduces_the_rollout_step(algorithm):
  """Given the rollout's own hint inputs and latent at step t, the single step
  gives the rollout's step-t representations and predictions."""
  cfg, spec, batch, net, step, params = _nets(algorithm, num_nodes=7)   # 2 padded nodes
  out = net.apply(params, None, batch.inputs, batch.hints, batch.lengths, batch.node_mask,
                  is_training=True, return_representations=True, return_latents=True)
  n = batch.num_nodes
  for t in (0, 2):
    if t == 0:
      cur = dense_data(spec, {k: v[0] for k, v in batch.hints.items()}, n)
    else:
      cur = soft_hints(spec, {k: v[t - 1] for k, v in out.hints.items()})
    one = step.apply(params, None, batch.inputs, cur, out.latents[t], batch.node_mask,
                     is_training=True)
    _close(one.node_reps, out.node_reps[t])
    for k in out.hints:
      _close(one.hints[k], out.hints[k][t])
    assert set(one.pair_reps) == set(out.pair_reps) and one.pair_reps
    for k in one.pair_reps:
      _close(one.pair_reps[k], out.pair_reps[k][t])
    _close(one.latent, out.latents[t + 1])
  _close(out.latents[0], np.zeros_like(out.latents[0]))


def _identity_twins(algorithm, extra_padding):
  """Twins that are their originals (identity node map, no added node), padded
  with `extra_padding` more nodes; every pair (t, t) with t < length - 1."""
  cfg, spec, batch, net, step, params = _nets(algorithm, n=5, count=2)
  samples = make_samples(algorithm, 5, 2, seed=1)
  from nar.batching import pad_samples
  twin_batch = pad_samples(samples, spec, num_nodes=5 + extra_padding)
  t = np.array([[0, 1, 2], [1, 2, 0]], np.int32)
  pv = {h: np.ones((2, 3), np.float32) for h in spec if spec[h][0] == 'hint'
        and spec[h][1] == 'node' and spec[h][2] == 'pointer'}
  pairs = PairData(t=t, t_twin=t, mask=np.ones((2, 3), np.float32), pointer_valid=pv,
                   node_valid=np.ones((2, 3), np.float32),
                   node_map=np.tile(np.arange(5, dtype=np.int32), (2, 1)))
  out = net.apply(params, None, batch.inputs, batch.hints, batch.lengths, batch.node_mask,
                  is_training=True, return_latents=True)
  return spec, batch, step, params, out, twin_batch, pairs


@pytest.mark.parametrize('algorithm', ['insertion_sort', 'dfs'])
def test_without_added_nodes_the_twin_equals_the_original(algorithm):
  """No added node: the twin's step is the original's step, also when the twin
  is padded with extra (masked) nodes."""
  spec, batch, step, params, out, twin_batch, pairs = _identity_twins(algorithm, 3)
  reps = one_step_reps(step, spec, params, None, batch, out.latents,
                       twin_steps(twin_batch, pairs), pairs, 1)
  _close(reps.node_y[:, :, :5], reps.node_x)
  for h in reps.pair_x:
    _close(reps.pair_y[h][:, :, :5, :5], reps.pair_x[h])
  # Padded twin nodes never enter a real node's representation: the same twins
  # padded to another size give the same values on the real nodes.
  _, _, _, _, _, twin_small, _ = _identity_twins(algorithm, 0)
  small = one_step_reps(step, spec, params, None, batch, out.latents,
                        twin_steps(twin_small, pairs), pairs, 1)
  _close(small.node_y, reps.node_y[:, :, :5])


def test_an_added_node_changes_the_twin_and_starts_from_zero():
  """With added nodes, the twin side runs at the twin's size from the
  original's latent on the original nodes and zeros on the added ones."""
  cfg, spec, batch, net, step, params = _nets('insertion_sort', n=5, count=2)
  method = methods.get(dataclasses.replace(cfg, method='hint_relic', relic_twin='step',
                                           relic_pairs=3, batch_size=2, relic_beta=0.0), spec)
  bx, steps, pairs = method.make_item(make_samples('insertion_sort', 5, 2, seed=4), step=0)
  assert steps.node_mask.sum(1).min() > 5                  # nodes were added
  out = net.apply(params, None, bx.inputs, bx.hints, bx.lengths, bx.node_mask,
                  is_training=True, return_latents=True)
  reps = one_step_reps(step, spec, params, None, bx, out.latents, steps, pairs, 1)
  assert reps.node_y.shape[2] == steps.node_mask.shape[1]
  # The twin's step of a pair, computed directly: the original's latent at step
  # t placed on its nodes through the node map, zeros on the added nodes.
  k, m = np.argwhere(pairs.mask > 0)[0]
  n_y = steps.node_mask.shape[1]
  latent = np.zeros((1, n_y, cfg.hidden), np.float32)
  real = bx.node_mask[k] > 0
  latent[0, pairs.node_map[k][real]] = np.asarray(out.latents[pairs.t[k, m], k])[real]
  assert set(range(n_y)) - set(pairs.node_map[k][real])      # some nodes start at zero
  direct = step.apply(params, None, {name: v[k:k + 1] for name, v in steps.inputs.items()},
                      dense_data(spec, {name: v[k:k + 1, m] for name, v in steps.hints.items()},
                                 n_y),
                      jnp.asarray(latent), steps.node_mask[k:k + 1], is_training=True)
  _close(reps.node_y[k, m], direct.node_reps[0])


def _step_method(algorithm='dfs', **kw):
  cfg = TrainConfig(algorithm=algorithm, method='hint_relic', hidden=8, batch_size=2,
                    relic_critic_hidden=8, relic_pairs=3, relic_twin='step', **kw).validate()
  spec = processed_spec(algorithm)
  method = methods.get(cfg, spec)
  item = method.make_item(make_samples(algorithm, 5, 2, seed=4), step=0)
  net = build_network(cfg, spec, item[0])
  params = method.init(net, jax.random.PRNGKey(0), item[0])
  return cfg, method, item, net, params


def test_one_step_item_shapes_and_the_twin_rollout_only_when_supervised():
  _, method, item, _, _ = _step_method(relic_beta=0.0)
  assert len(item) == 3 and isinstance(item[1], TwinSteps)
  bx, steps, pairs = item
  for name, v in steps.hints.items():
    assert v.shape[:2] == pairs.t.shape
    if method.spec[name][1] != 'graph':
      assert v.shape[2] == steps.node_mask.shape[1]
  _, _, item_b, _, _ = _step_method(relic_beta=1.0)
  assert len(item_b) == 4                                  # + the twin batch to supervise


@pytest.mark.parametrize('beta', [0.0, 1.0])
def test_one_step_loss_terms_and_invalid_pairs(beta):
  cfg, method, item, net, params = _step_method(relic_beta=beta)
  loss_fn = method.loss_fn(net)
  total, terms = loss_fn(params, None, *item)
  assert np.isfinite(float(total)) and float(terms['relic_anchors']) > 0
  assert ('sup_twin' in terms) == (beta > 0)
  bx, steps, pairs = item[:3]
  empty = pairs._replace(mask=np.zeros_like(pairs.mask))
  _, t0 = loss_fn(params, None, bx, steps, empty, *item[3:])
  assert float(t0['relic_anchors']) == 0 and float(t0['relic_contrast']) == 0
  if beta == 0:   # no contrast, no twin: the supervised loss of the originals alone
    assert float(t0['sup_x']) == pytest.approx(float(terms['sup_x']), rel=1e-6)


def test_gradients_reach_the_processor_from_the_twin_side():
  cfg, method, (bx, steps, pairs), net, params = _step_method(relic_beta=0.0)
  spec = method.spec
  step = method.step_net()
  out = net.apply(params, None, bx.inputs, bx.hints, bx.lengths, bx.node_mask,
                  is_training=True, return_latents=True)
  latents = jax.lax.stop_gradient(out.latents)     # only the twin's own step remains

  # Gradients are jitted as the trainer's are: one compile, not one per eager operation.
  def twin_side(p, bx, latents, steps, pairs):
    reps = one_step_reps(step, spec, p, None, bx, latents, steps, pairs, 1)
    return jnp.sum(reps.node_y ** 2) + sum(jnp.sum(v ** 2) for v in reps.pair_y.values())
  net_params = {k: v for k, v in params.items() if not k.startswith('relic_critic')}
  grads = jax.jit(jax.grad(twin_side))(net_params, bx, latents, steps, pairs)
  proc = [v for k, v in grads.items() if 'processor' in k]
  assert proc and any(float(jnp.abs(x).sum()) > 0 for g in proc for x in g.values())
  # and the full loss's contrast reaches the processor too
  loss_fn = method.loss_fn(net)
  g = jax.jit(jax.grad(lambda p, bx, steps, pairs: loss_fn(p, None, bx, steps, pairs)[1][
      'relic_contrast']))(params, bx, steps, pairs)
  assert any(float(jnp.abs(x).sum()) > 0 for k, v in g.items() if 'processor' in k
             for x in v.values())


def test_configs_saved_before_relic_twin_read_as_rollout():
  old = TrainConfig(algorithm='dfs', method='hint_relic').to_json()
  del old['relic_twin'], old['schema']      # a version-1 file
  assert TrainConfig.from_json(old).relic_twin == 'rollout'
  assert not config_conflicts(old, TrainConfig(algorithm='dfs', method='hint_relic',
                                               relic_twin='rollout'))
  assert config_conflicts(old, TrainConfig(algorithm='dfs', method='hint_relic',
                                           relic_twin='step'))
