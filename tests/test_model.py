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


def _with_reference(algorithm):
  """A small batch, its spec and feedback, dm-clrs's BaselineModel initialised on
  it, and our network for the same spec."""
  batch, spec = make_batch(algorithm, 6, 3, time_bucketing=False)
  fb = _feedback(batch, spec)
  ref = baselines.BaselineModel(
      spec, fb, clrs.get_processor_factory('triplet_gmpnn', use_ln=True, nb_triplet_fts=8),
      hidden_dim=H, encode_hints=True, decode_hints=True, encoder_init='xavier_on_scalars')
  ref.init(fb.features, 7)
  return batch, spec, fb, ref, _net(spec, batch)


@pytest.mark.parametrize('algorithm', ['insertion_sort', 'dfs', 'floyd_warshall', 'graham_scan',
                                       'lcs_length', 'segments_intersect'])
def test_same_outputs_and_loss_as_dm_clrs(algorithm):
  batch, spec, fb, ref, net = _with_reference(algorithm)
  params = ref.params
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


@pytest.mark.parametrize('algorithm,groups,extra_steps', [
    ('insertion_sort', 1, 3), ('bfs', 1, 3), ('floyd_warshall', 1, 3),
    # As training pads on a CPU (length groups; a batch in a larger size's
    # planned shape, data.PaddingPlan): more padded steps, skipped by the groups.
    ('bfs', 4, 9)])
def test_padding_changes_no_prediction_nor_loss(algorithm, groups, extra_steps):
  samples = make_samples(algorithm, 5, 4, seed=1)
  from nar.sample import processed_spec
  spec = processed_spec(algorithm)
  tight = pad_samples(samples, spec, time_bucketing=False)
  padded = pad_samples(samples, spec, num_nodes=8, num_steps=tight.num_steps + extra_steps)
  net = make_net(spec, nb_dims_of(tight.inputs, tight.hints, tight.outputs),
                 NetConfig(ProcessorConfig(hidden=H), length_groups=groups))
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

  def loss(p, batch):
    out = net.apply(p, None, batch.inputs, batch.hints, batch.lengths, batch.node_mask,
                    is_training=True)
    return supervised_loss(spec, out, batch)[0]
  ga, gb = (jax.jit(jax.grad(loss))(params, x) for x in (tight, padded))
  for x, y in zip(jax.tree_util.tree_leaves(ga), jax.tree_util.tree_leaves(gb)):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


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


def test_max_plus_splits_the_gradient_between_tied_maxima_as_autodiff_does():
  """Small integers: many exact ties; first nodes 0 and 1 identical: always tied."""
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(1), 3)
  u = jax.random.randint(k1, (2, 6, 6, 3), 0, 3).astype(jnp.float32)
  v = jax.random.randint(k2, (2, 6, 6, 3), 0, 3).astype(jnp.float32)
  u, v = u.at[:, 1].set(u[:, 0]), v.at[:, 1].set(v[:, 0])
  g = jax.random.normal(k3, (2, 6, 6, 3))
  plain = lambda u, v: jnp.max(u[:, :, :, None] + v[:, :, None], axis=1)  # noqa: E731
  ga = jax.jit(jax.grad(lambda u, v: jnp.sum(max_plus(u, v) * g), argnums=(0, 1)))(u, v)
  gb = jax.grad(lambda u, v: jnp.sum(plain(u, v) * g), argnums=(0, 1))(u, v)
  for x, y in zip(ga, gb):
    np.testing.assert_allclose(x, y, atol=1e-5)


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


@pytest.mark.parametrize('groups', [2, 4])
def test_groups_of_similar_length_give_the_same_predictions_loss_and_gradient(groups):
  """length_groups > 1 sorts the batch by trajectory length, runs each group
  only for the steps its longest sample needs and puts the samples back in
  order: outputs, hint logits at every step a loss reads, representations,
  loss and gradient are those of one rollout of the whole batch. 6 samples
  with 4 groups asked for: 3 groups of 2 (the largest divisor)."""
  batch, spec = make_batch('bfs', 8, 6, seed=3)
  lengths = np.asarray(batch.lengths)
  assert len(set(lengths.tolist())) > 1, 'the check needs trajectories of different lengths'
  nets = {g: make_net(spec, nb_dims_of(batch.inputs, batch.hints, batch.outputs),
                      NetConfig(ProcessorConfig(hidden=H), length_groups=g)) for g in (1, groups)}
  params = nets[1].init(jax.random.PRNGKey(4), batch.inputs, batch.hints, batch.lengths,
                        batch.node_mask, is_training=True)
  results = {}
  for g, net in nets.items():
    def loss(p, b, net=net):
      out = net.apply(p, None, b.inputs, b.hints, b.lengths, b.node_mask, is_training=True,
                      return_representations=True, return_latents=True)
      return supervised_loss(spec, out, b)[0], out
    results[g] = jax.jit(jax.value_and_grad(loss, has_aux=True))(params, batch)
  ((l_1, out_1), g_1), ((l_g, out_g), g_g) = results[1], results[groups]
  np.testing.assert_allclose(l_g, l_1, rtol=1e-6)
  for k in out_1.outputs:
    np.testing.assert_allclose(out_g.outputs[k], out_1.outputs[k], rtol=1e-5, atol=1e-5)
  # Step s predicts the hints of step s + 1: read where s + 1 < length (and s = 0).
  steps = out_1.hints['pi_h'].shape[0]
  read = (np.arange(steps)[:, None] < np.maximum(lengths - 1, 1)[None, :])       # [S, B]
  for k in out_1.hints:
    np.testing.assert_allclose(np.asarray(out_g.hints[k])[read], np.asarray(out_1.hints[k])[read],
                               rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(out_g.node_reps)[read], np.asarray(out_1.node_reps)[read],
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(out_g.pair_reps['pi_h'])[read],
                             np.asarray(out_1.pair_reps['pi_h'])[read], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(out_g.latents)[read], np.asarray(out_1.latents)[read],
                             rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(g_g), jax.tree_util.tree_leaves(g_1)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  # The skipped steps are really skipped: the time loop of each group is guarded.
  jaxpr = str(jax.make_jaxpr(lambda p, b: nets[groups].apply(
      p, None, b.inputs, b.hints, b.lengths, b.node_mask, is_training=False))(params, batch))
  assert 'cond[' in jaxpr


def test_length_groups_setting_resolves_per_backend_and_data():
  from nar.model import AUTO_LENGTH_GROUPS, resolve_length_groups
  assert resolve_length_groups(3, lengths_vary=False, backend='gpu') == 3
  assert resolve_length_groups(0, lengths_vary=True, backend='cpu') == AUTO_LENGTH_GROUPS
  assert resolve_length_groups(0, lengths_vary=False, backend='cpu') == 1
  assert resolve_length_groups(0, lengths_vary=True, backend='gpu') == 1
  assert resolve_length_groups(0, lengths_vary=True, backend='tpu') == 1


@pytest.mark.parametrize('algorithm,weight_grad', [('dfs', 'auto'), ('floyd_warshall', 'auto'),
                                                   ('dfs', 'transposed')])
def test_same_gradient_as_dm_clrs(algorithm, weight_grad, monkeypatch):
  """Our backward pass (custom gradients of the triplet max and of the max over
  senders, remat, the weight gradients' layout) gives dm-clrs's gradient of its
  own loss, parameter by parameter. (Not the sorting algorithms: dm-clrs's loss
  of a permutation output draws Gumbel noise.) 'transposed': every large-enough
  dot's weight gradient through the transposed layout, whatever the sizes."""
  from nar import layers
  monkeypatch.setattr(layers, 'WEIGHT_GRAD', weight_grad)
  if weight_grad == 'transposed':
    monkeypatch.setattr(layers, 'TRANSPOSED_GRAD_MIN_ROWS', 1)
  batch, spec, fb, ref, net = _with_reference(algorithm)
  params = ref.params

  def ours(p):
    out = net.apply(p, jax.random.PRNGKey(0), batch.inputs, batch.hints, batch.lengths,
                    batch.node_mask, is_training=True)
    return supervised_loss(spec, out, batch)[0]
  g_ours = jax.jit(jax.grad(ours))(params)
  g_ref = jax.grad(lambda p: ref._loss(p, jax.random.PRNGKey(0), fb, 0))(params)
  scale = max(float(jnp.max(jnp.abs(x))) for x in jax.tree_util.tree_leaves(g_ref))
  for path, a in jax.tree_util.tree_leaves_with_path(g_ours):
    b = g_ref
    for k in path:
      b = b[k.key]
    np.testing.assert_allclose(a, b, atol=1e-4 * scale, rtol=2e-3, err_msg=jax.tree_util.keystr(path))


def test_max_over_senders_gradient_is_autodiffs_with_ties_and_masked_senders():
  """The fused backward of the max over senders routes the gradient as autodiff
  of `jnp.max` does: split between exact ties, nothing to masked senders, and a
  sample with no sender at all (a padded one) gets nothing."""
  from nar import processors
  k1, k2 = jax.random.split(jax.random.PRNGKey(3))
  msgs = jnp.round(2 * jax.random.normal(k1, (3, 5, 4, 6))) / 2      # many exact ties
  msgs = msgs.at[0, 1].set(msgs[0, 2])                                 # senders 1, 2 always tied
  ok = jnp.array([[1, 1, 1, 0, 1], [0, 0, 0, 0, 0], [1, 0, 1, 1, 1]], bool)
  g = jax.random.normal(k2, (3, 4, 6))
  plain = lambda m: jnp.max(jnp.where(ok[:, :, None, None], m, -processors.BIG), axis=1)  # noqa: E731
  out, vjp = jax.vjp(lambda m: processors.max_over_senders(m, ok), msgs)
  ref_out, ref_vjp = jax.vjp(plain, msgs)
  np.testing.assert_array_equal(out, ref_out)
  grad, ref_grad = jax.jit(vjp)(g)[0], ref_vjp(g)[0]
  np.testing.assert_allclose(grad, ref_grad, atol=1e-7)
  assert np.count_nonzero(grad[0, :3]) > grad[0, 0].size                # ties share
  assert not np.any(grad[1])                                           # the empty sample
  assert not np.any(grad[0, 3])                                        # a masked sender


def test_matmul_weight_gradient_layouts_agree(monkeypatch):
  """`matmul`'s weight gradient written out transposed (XLA:CPU's fast kernel)
  equals XLA's own, and the input gradient too."""
  from nar import layers
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(4), 3)
  x = jax.random.normal(k1, (4, 8, 8, 32))
  w = jax.random.normal(k2, (32, 24))
  g = jax.random.normal(k3, (4, 8, 8, 24))
  monkeypatch.setattr(layers, 'TRANSPOSED_GRAD_MIN_ROWS', 1)
  grads = {}
  for mode in ('native', 'transposed'):
    monkeypatch.setattr(layers, 'WEIGHT_GRAD', mode)
    grads[mode] = jax.jit(jax.grad(lambda x, w: jnp.sum(layers.matmul(x, w) * g),
                                   argnums=(0, 1)))(x, w)
  hlo = jax.jit(jax.grad(lambda w: jnp.sum(layers.matmul(x, w) * g))).lower(w).as_text()
  assert 'optimization_barrier' in hlo
  for a, b in zip(grads['native'], grads['transposed']):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
