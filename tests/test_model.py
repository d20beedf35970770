"""The reasoner equals dm-clrs's Net for the same parameters, and padding changes nothing."""

import re

import clrs
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from clrs._src import baselines, probing

from nar.batching import pad_samples
from nar.losses import supervised_loss
from nar.model import NetConfig, make_net, nb_dims_of
from nar.processors import ProcessorConfig, max_plus
from tests.helpers import make_batch, make_samples

H = 16


def _feedback(batch, spec):
  def dp(name, x):
    _, loc, typ = spec[name]
    return probing.DataPoint(name=name, location=loc, type_=typ, data=np.asarray(x, np.float32))
  return clrs.Feedback(clrs.Features(tuple(dp(k, v) for k, v in batch.inputs.items()),
                                     tuple(dp(k, v) for k, v in batch.hints.items()),
                                     batch.lengths),
                       tuple(dp(k, v) for k, v in batch.outputs.items()))


def _net(spec, batch, kind='triplet_gmpnn'):
  return make_net(spec, nb_dims_of(batch.inputs, batch.hints, batch.outputs),
                  NetConfig(ProcessorConfig(kind=kind, hidden=H)))


@pytest.mark.parametrize('algorithm', ['insertion_sort', 'dfs', 'floyd_warshall', 'graham_scan',
                                       'lcs_length', 'segments_intersect'])
def test_same_outputs_and_loss_as_dm_clrs(algorithm):
  batch, spec = make_batch(algorithm, 6, 3, time_bucketing=False)
  fb = _feedback(batch, spec)
  ref = baselines.BaselineModel(
      spec, fb, clrs.get_processor_factory('triplet_gmpnn', use_ln=True, nb_triplet_fts=8),
      hidden_dim=H, encode_hints=True, decode_hints=True, encoder_init='xavier_on_scalars')
  ref.init(fb.features, 7)
  params = ref.params
  net = _net(spec, batch)
  ours_template = net.init(jax.random.PRNGKey(0), batch.inputs, batch.hints, batch.lengths,
                           batch.node_mask, is_training=False)
  # Same parameter tree: a dm-clrs checkpoint loads as is.
  assert jax.tree_util.tree_structure(ours_template) == jax.tree_util.tree_structure(params)
  out_ref, hints_ref = ref.net_fn.apply(params, jax.random.PRNGKey(0), [fb.features], True, 0,
                                        True, False)
  ours = net.apply(params, None, batch.inputs, batch.hints, batch.lengths, batch.node_mask,
                   is_training=False)
  for k, v in out_ref.items():
    np.testing.assert_allclose(ours.outputs[k], v, atol=2e-5, rtol=1e-4)
  for k in hints_ref[0]:
    np.testing.assert_allclose(ours.hints[k], jnp.stack([h[k] for h in hints_ref]),
                               atol=2e-5, rtol=1e-4)
  # The supervised loss equals BaselineModel._loss (no permutation outputs: no Gumbel noise).
  if not any(t == 'permutation_pointer' for _, _, t in spec.values()):
    ref_loss = ref._loss(params, jax.random.PRNGKey(0), fb, 0)
    out_train = net.apply(params, jax.random.PRNGKey(0), batch.inputs, batch.hints,
                          batch.lengths, batch.node_mask, is_training=True)
    ours_loss, _ = supervised_loss(spec, out_train, batch)
    np.testing.assert_allclose(ours_loss, ref_loss, rtol=1e-4)


@pytest.mark.parametrize('algorithm', ['insertion_sort', 'bfs', 'floyd_warshall'])
def test_padding_changes_no_prediction_nor_loss(algorithm):
  samples = make_samples(algorithm, 5, 3, seed=1)
  from nar.sample import processed_spec
  spec = processed_spec(algorithm)
  tight = pad_samples(samples, spec, time_bucketing=False)
  padded = pad_samples(samples, spec, num_nodes=8, num_steps=tight.num_steps + 3)
  net = _net(spec, tight)
  params = net.init(jax.random.PRNGKey(1), tight.inputs, tight.hints, tight.lengths,
                    tight.node_mask, is_training=False)
  a = net.apply(params, None, tight.inputs, tight.hints, tight.lengths, tight.node_mask,
                is_training=False)
  b = net.apply(params, None, padded.inputs, padded.hints, padded.lengths, padded.node_mask,
                is_training=False)
  n, steps = 5, tight.num_steps - 1
  for k, v in a.outputs.items():
    _, loc, typ = spec[k]
    cut = b.outputs[k][:, :n]
    if loc == 'edge' or typ in ('pointer', 'permutation_pointer'):
      cut = cut[:, :, :n]
    if loc == 'edge' and typ == 'pointer':
      cut = cut[..., :n]
    np.testing.assert_allclose(cut, v, atol=1e-4, rtol=1e-4, err_msg=k)
  for k, v in a.hints.items():
    _, loc, typ = spec[k]
    cut = b.hints[k][:steps, :, :n] if loc != 'graph' else b.hints[k][:steps]
    if loc == 'edge' or (loc == 'node' and typ == 'pointer'):
      cut = cut[..., :n] if loc == 'node' else cut[:, :, :, :n]
    if loc == 'edge' and typ == 'pointer':
      cut = cut[..., :n]
    np.testing.assert_allclose(cut, v, atol=1e-4, rtol=1e-4, err_msg=k)
  la, _ = supervised_loss(spec, a, tight)
  lb, _ = supervised_loss(spec, b, padded)
  np.testing.assert_allclose(la, lb, rtol=1e-4)


def test_max_plus_matches_autodiff():
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
  u = jax.random.normal(k1, (2, 5, 5, 3))
  v = jax.random.normal(k2, (2, 5, 5, 3))
  g = jax.random.normal(k3, (2, 5, 5, 3))
  plain = lambda u, v: jnp.max(u[:, :, :, None] + v[:, :, None], axis=1)  # noqa: E731
  np.testing.assert_allclose(max_plus(u, v), plain(u, v))
  ga = jax.grad(lambda u, v: jnp.sum(max_plus(u, v) * g), argnums=(0, 1))(u, v)
  gb = jax.grad(lambda u, v: jnp.sum(plain(u, v) * g), argnums=(0, 1))(u, v)
  for x, y in zip(ga, gb):
    np.testing.assert_allclose(x, y, atol=1e-6)


@pytest.mark.parametrize('block', [1, 2, 3, 7])
def test_max_plus_over_blocks_of_a_gives_the_same_values(block):
  """Large problems reduce over blocks of the first node (1, 2, 3 or all 7 at a
  time; a last block padded): exactly the values of the one-shot maximum,
  masked senders (-BIG) included."""
  from nar import processors
  k1, k2 = jax.random.split(jax.random.PRNGKey(1))
  u = jax.random.normal(k1, (2, 7, 7, 3)).at[:, 5:].add(-processors.BIG)
  v = jax.random.normal(k2, (2, 7, 7, 3))
  whole = jnp.max(u[:, :, :, None] + v[:, :, None], axis=1)
  np.testing.assert_array_equal(jax.jit(processors._max_plus_blocks, static_argnums=2)(u, v, block),
                                whole)


def test_max_plus_reduces_over_blocks_only_past_the_block_size():
  """Up to n = 64 (training and the standard test) one reduction, as before;
  at n = 128 blocks of 32 nodes (the evaluation of larger problems)."""
  small = jax.ShapeDtypeStruct((2, 64, 64, 8), jnp.float32)
  large = jax.ShapeDtypeStruct((1, 128, 128, 8), jnp.float32)
  assert 'scan' not in str(jax.make_jaxpr(max_plus)(small, small))
  assert 'scan' in str(jax.make_jaxpr(max_plus)(large, large))


def test_representations_have_documented_shapes():
  batch, spec = make_batch('insertion_sort', 5, 2)
  net = _net(spec, batch)
  params = net.init(jax.random.PRNGKey(0), batch.inputs, batch.hints, batch.lengths,
                    batch.node_mask, is_training=False)
  out = net.apply(params, None, batch.inputs, batch.hints, batch.lengths, batch.node_mask,
                  is_training=False, return_representations=True)
  s = batch.num_steps - 1
  assert out.node_reps.shape == (s, 2, 5, 3 * H)
  assert out.pair_reps['pred_h'].shape == (s, 2, 5, 5, H)


def test_other_dm_clrs_processor_runs():
  batch, spec = make_batch('bfs', 5, 2)
  net = _net(spec, batch, kind='pgn')
  params = net.init(jax.random.PRNGKey(0), batch.inputs, batch.hints, batch.lengths,
                    batch.node_mask, is_training=True)
  out = net.apply(params, None, batch.inputs, batch.hints, batch.lengths, batch.node_mask,
                  is_training=False)
  assert np.all(np.isfinite(out.outputs['pi']))


@pytest.mark.parametrize('algorithm', ['insertion_sort', 'dfs'])
def test_recomputing_each_step_in_the_backward_gives_the_same_loss_and_gradient(algorithm):
  """remat 'full' (the default) checkpoints the scan body; 'none' stores every
  step's activations: the same mathematics, so the same loss and gradient."""
  batch, spec = make_batch(algorithm, 6, 3)
  results = {}
  for remat in ('none', 'full'):
    net = make_net(spec, nb_dims_of(batch.inputs, batch.hints, batch.outputs),
                   NetConfig(ProcessorConfig(hidden=H), remat=remat))
    params = net.init(jax.random.PRNGKey(2), batch.inputs, batch.hints, batch.lengths,
                      batch.node_mask, is_training=True)

    def loss(p, b):
      out = net.apply(p, None, b.inputs, b.hints, b.lengths, b.node_mask, is_training=True)
      return supervised_loss(spec, out, b)[0]
    forward = str(jax.make_jaxpr(loss)(params, batch))   # the primitive prints as remat2
    assert bool(re.search(r'= (remat\d*|checkpoint)\[', forward)) == (remat == 'full'), remat
    results[remat] = jax.jit(jax.value_and_grad(loss))(params, batch)
  (l_none, g_none), (l_full, g_full) = results['none'], results['full']
  np.testing.assert_allclose(l_full, l_none, rtol=1e-6)
  for a, b in zip(jax.tree_util.tree_leaves(g_full), jax.tree_util.tree_leaves(g_none)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
