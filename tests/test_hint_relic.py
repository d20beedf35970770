"""Hint-ReLIC objective: values against a NumPy reference, masking, optimum, gradients."""

import dataclasses

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import augment
from nar import methods
from nar.config import TrainConfig
from nar.hint_relic import PairData, contrast_terms, relic_loss
from nar.model import NetOutput
from nar.sample import processed_spec
from nar.train import build_network
from tests.helpers import make_samples

TAU = 0.5


def _np_log_softmax(x, valid):
  x = np.where(valid, x, -1e9)
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _unit(rng, *shape):
  z = rng.normal(size=shape)
  return z / np.linalg.norm(z, axis=-1, keepdims=True)


def test_contrast_terms_match_numpy_by_hand():
  rng = np.random.default_rng(0)
  na, nb, d = 3, 5, 4
  za, zb = _unit(rng, na, d), _unit(rng, nb, d)
  cols = np.array([0, 2, 4])            # node map: a-candidate i sits at cols[i] in b
  anchor_a, anchor_b = za[1], zb[cols[1]]
  valid_a, valid_b = np.ones(na, bool), np.array([1, 1, 1, 1, 0], bool)  # last b is padding
  ce_ab, ce_ba, kl = contrast_terms(
      jnp.asarray(za), jnp.asarray(zb), jnp.asarray(anchor_a), jnp.asarray(anchor_b),
      target_b=jnp.asarray(cols[1]), target_a=jnp.asarray(1), valid_a=jnp.asarray(valid_a),
      valid_b=jnp.asarray(valid_b), cols_a_in_b=jnp.asarray(np.array([0, 2, 3])),
      temperature=TAU)
  lab = _np_log_softmax(zb @ anchor_a / TAU, valid_b)
  lba = _np_log_softmax(za @ anchor_b / TAU, valid_a)
  assert float(ce_ab) == pytest.approx(-lab[cols[1]], rel=1e-5)
  assert float(ce_ba) == pytest.approx(-lba[1], rel=1e-5)
  q = _np_log_softmax((zb @ anchor_a / TAU)[[0, 2, 3]], valid_a)
  assert float(kl) == pytest.approx(np.sum(np.exp(q) * (q - lba)), rel=1e-4, abs=1e-6)


def test_identical_representations_minimise_the_contrast_and_zero_the_kl():
  rng = np.random.default_rng(1)
  n, d = 4, 6
  z = _unit(rng, n, d)
  cols = jnp.arange(n)
  kw = dict(target_b=jnp.asarray(2), target_a=jnp.asarray(2), valid_a=jnp.ones(n, bool),
            valid_b=jnp.ones(n, bool), cols_a_in_b=cols, temperature=TAU)
  ce_ab, ce_ba, kl = contrast_terms(jnp.asarray(z), jnp.asarray(z), jnp.asarray(z[2]),
                                    jnp.asarray(z[2]), **kw)
  assert float(kl) == pytest.approx(0.0, abs=1e-6)
  for seed in range(20):  # any other positive, same candidates: never lower
    zb = z.copy()
    zb[2] = _unit(np.random.default_rng(seed), d)
    other, _, _ = contrast_terms(jnp.asarray(z), jnp.asarray(zb), jnp.asarray(z[2]),
                                 jnp.asarray(zb[2]), **kw)
    assert float(other) >= float(ce_ab) - 1e-6


def _relic_setup(algorithm='insertion_sort'):
  # The rollout twins (tests/test_one_step.py covers the one-step twins, the default).
  cfg = TrainConfig(algorithm=algorithm, method='hint_relic', hidden=8, batch_size=2,
                    relic_critic_hidden=8, relic_pairs=3, relic_twin='rollout',
                    relic_beta=1.0).validate()
  spec = processed_spec(algorithm)
  method = methods.get(cfg, spec)
  item = method.make_item(make_samples(algorithm, 5, 2, seed=4), step=0)
  net = build_network(cfg, spec, item[0])
  params = method.init(net, jax.random.PRNGKey(0), item[0])
  return cfg, spec, method, item, net, params


def test_invalid_pairs_and_padding_contribute_nothing():
  cfg, spec, method, (bx, by, pairs), net, params = _relic_setup()
  assert pairs.mask.sum() > 0
  loss_fn = method.loss_fn(net)
  _, terms = loss_fn(params, None, bx, by, pairs)
  assert float(terms['relic_anchors']) > 0
  # No valid pair: the ReLIC terms vanish.
  empty = pairs._replace(mask=np.zeros_like(pairs.mask))
  _, t0 = loss_fn(params, None, bx, by, empty)
  assert float(t0['relic_anchors']) == 0 and float(t0['relic_contrast']) == 0
  # Changing the data of invalid pair slots (their step indices) changes nothing.
  moved = pairs._replace(t=np.where(pairs.mask > 0, pairs.t, 0),
                         t_twin=np.where(pairs.mask > 0, pairs.t_twin, 1))
  _, t1 = loss_fn(params, None, bx, by, moved)
  assert float(t1['relic_contrast']) == pytest.approx(float(terms['relic_contrast']), rel=1e-6)


def _critic(seed: int, size: int):
  """A Haiku MLP critic: its layers (as relic_loss takes them) and its NumPy
  embedding (MLP then L2 normalisation), computed independently."""
  from nar.layers import Affine
  critic = hk.transform(lambda x: hk.nets.MLP([4, 4])(x))
  cp = critic.init(jax.random.PRNGKey(seed), jnp.zeros((1, size)))
  layers = [Affine(cp['mlp/~/linear_0']['w'], cp['mlp/~/linear_0']['b']),
            Affine(cp['mlp/~/linear_1']['w'], cp['mlp/~/linear_1']['b'])]

  def embed(v):
    z = np.asarray(critic.apply(cp, None, jnp.asarray(v)))
    return z / np.linalg.norm(z, axis=-1, keepdims=True)
  return layers, embed


def test_relic_loss_on_hand_made_representations():
  """Twin = original with identity node map: contrast equals the NumPy value."""
  rng = np.random.default_rng(3)
  s, b, n, h = 2, 1, 3, 4
  node = rng.normal(size=(s, b, n, 3 * h)).astype(np.float32)
  out = NetOutput(outputs={}, hints={}, node_reps=jnp.asarray(node), pair_reps={})
  node_mask = np.ones((b, n), np.float32)

  class B:  # the two attributes relic_loss reads
    pass
  batch = B()
  batch.node_mask, batch.num_nodes, batch.hints = node_mask, n, {}
  pairs = PairData(t=np.array([[1]]), t_twin=np.array([[1]]), mask=np.ones((1, 1), np.float32),
                   pointer_valid={}, node_valid=np.ones((1, 1), np.float32),
                   node_map=np.arange(n)[None].astype(np.int32))
  layers, embed = _critic(0, 3 * h)
  ce, kl, w = relic_loss({}, out, out, batch, batch, pairs, (layers, layers), 1, TAU)
  z = embed(node[1, 0])
  logits = z @ z.T / TAU
  expected = np.mean([-_np_log_softmax(logits[i], np.ones(n, bool))[i] for i in range(n)])
  assert float(ce) == pytest.approx(expected, rel=1e-5)
  assert float(kl) == pytest.approx(0.0, abs=1e-6) and float(w) == n


def test_gradients_of_the_contrast_reach_the_processor():
  cfg, spec, method, (bx, by, pairs), net, params = _relic_setup('dfs')
  cfg = dataclasses.replace(cfg, relic_beta=0.0)
  method.config = cfg
  loss_fn = method.loss_fn(net)

  def relic_only(p, bx, by, pairs):
    _, terms = loss_fn(p, None, bx, by, pairs)
    return terms['relic_contrast'] + terms['relic_kl']
  # Jitted as the trainer does: one compile instead of one per eager operation.
  grads = jax.jit(jax.grad(relic_only))(params, bx, by, pairs)
  proc = [v for k, v in grads.items() if 'processor' in k]
  assert proc and any(float(jnp.abs(x).sum()) > 0 for g in proc for x in g.values())
  critic = [v for k, v in grads.items() if k.startswith('relic_critic')]
  assert any(float(jnp.abs(x).sum()) > 0 for g in critic for x in g.values())


def test_unsupported_algorithm_is_a_clear_error():
  cfg = TrainConfig(algorithm='segments_intersect', method='hint_relic').validate()
  with pytest.raises(augment.UnsupportedAlgorithmError):
    methods.get(cfg, processed_spec('segments_intersect'))


def test_originals_and_twins_are_padded_to_their_own_sizes():
  """Each batch takes its own padding plan's shape (twins may add nodes; padding
  the originals to the twins' size would cost (N'/N)^3 in the processor)."""
  cfg, spec, method, (bx, by, pairs), net, params = _relic_setup()
  # 5-node originals, no training size given: the smallest planned shape holding them.
  expect_x = min(n for n, _ in method.stream.plan.shapes.values() if n >= 5)
  assert bx.num_nodes == expect_x
  real_twin_nodes = int(by.node_mask.sum(1).max())
  assert real_twin_nodes > 5                     # insertion_sort twins add nodes
  assert by.num_nodes in {n for n, _ in method.twin_plan.shapes.values()}
  assert by.num_nodes >= real_twin_nodes and by.num_nodes > bx.num_nodes
  assert pairs.node_map.shape == (2, bx.num_nodes)
  assert pairs.node_map.max() < real_twin_nodes  # originals map onto real twin nodes


def test_relic_loss_with_an_added_twin_node():
  """x has n nodes, its twin n + 1 (the extra node is a negative candidate)."""
  rng = np.random.default_rng(5)
  s, n, h = 2, 3, 4
  node_x = rng.normal(size=(s, 1, n, 3 * h)).astype(np.float32)
  extra = rng.normal(size=(s, 1, 1, 3 * h)).astype(np.float32)
  node_y = np.concatenate([node_x, extra], axis=2)
  out_x = NetOutput(outputs={}, hints={}, node_reps=jnp.asarray(node_x), pair_reps={})
  out_y = NetOutput(outputs={}, hints={}, node_reps=jnp.asarray(node_y), pair_reps={})

  class B:
    pass
  bx, by = B(), B()
  bx.node_mask, bx.num_nodes, bx.hints = np.ones((1, n), np.float32), n, {}
  by.node_mask, by.num_nodes, by.hints = np.ones((1, n + 1), np.float32), n + 1, {}
  pairs = PairData(t=np.array([[0]]), t_twin=np.array([[0]]), mask=np.ones((1, 1), np.float32),
                   pointer_valid={}, node_valid=np.ones((1, 1), np.float32),
                   node_map=np.arange(n)[None].astype(np.int32))
  layers, embed = _critic(1, 3 * h)
  ce, kl, w = relic_loss({}, out_x, out_y, bx, by, pairs, (layers, layers), 1, TAU)
  zx, zy = embed(node_x[0, 0]), embed(node_y[0, 0])
  ones = lambda k: np.ones(k, bool)  # noqa: E731
  ce_xy = [-_np_log_softmax(zx[i] @ zy.T / TAU, ones(n + 1))[i] for i in range(n)]
  ce_yx = [-_np_log_softmax(zy[i] @ zx.T / TAU, ones(n))[i] for i in range(n)]
  assert float(ce) == pytest.approx(np.mean((np.array(ce_xy) + np.array(ce_yx)) / 2), rel=1e-5)
  # KL: x->x' restricted to the original candidates against x'->x.
  kls = []
  for i in range(n):
    q = _np_log_softmax((zx[i] @ zy.T / TAU)[:n], ones(n))
    p = _np_log_softmax(zy[i] @ zx.T / TAU, ones(n))
    kls.append(np.sum(np.exp(q) * (q - p)))
  assert float(kl) == pytest.approx(np.mean(kls), rel=1e-4, abs=1e-6) and float(w) == n
