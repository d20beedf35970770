"""How invariant a model's next step is across causally-equivalent twins.

Measured on held-out originals (the validation distribution) and their twins,
at valid step pairs (t on the original, t' on the twin), each side one
processor step from the same state (the original's rollout latent entering
step t, carried to the twin's original nodes): the comparison the Hint-ReLIC
objective trains. For every anchor (a valid pair and an original node i):

  * retrieval: the fraction of anchors whose most similar candidate on the other
    side is the true partner, both directions averaged. Pointer hint h: anchor
    r_x(i, j) (j: i's true next target), candidates r_x'(m(i), u) for every
    real twin node u, partner u = m(j); and back. Node state (the other hints):
    node embedding i against every twin node, partner m(i); and back.
  * agreement: whether the two steps predict the same next hint on the original
    nodes (pointers compared through the node map; masks, categories and
    graph-level hints compared directly; scalars are not compared).
  * similarity: the mean cosine similarity of partners, and of non-partners.

Similarity is the cosine of the raw representations (the pair features the
pointer decoder scores, the node embeddings), so that a model without critics
(the baseline) is measured the same way: its numbers are the floor the
invariance term must beat. A Hint-ReLIC model's retrieval in its critics'
space (the space its contrast trains) is given too.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from nar.batching import Batch, pad_samples
from nar.hint_relic import (PairData, TwinSteps, _embed, one_step_outputs, select_pairs,
                            twin_steps)
from nar.processors import BIG

from clrs._src import specs as clrs_specs

_Type = clrs_specs.Type
_Location = clrs_specs.Location

# Per anchor group, the sums `invariance_sums` returns (and `summarise` divides).
_SUMS = ('anchors', 'retrieved', 'retrieved_critic', 'partner_sim', 'other_sim', 'others',
         'agree', 'compared')


class InvarianceSet(NamedTuple):
  """Originals, their twins' steps and the selected pairs, padded to one shape."""
  batch_x: Batch
  twins: TwinSteps
  pairs: PairData


def make_set(samples: list, spec: dict, augmenter, pointer_hints: list, other_hints: list,
             pairs_per_twin: int, seed: int) -> InvarianceSet:
  """Host side: one twin per original (`augmenter(sample, rng)`), and up to
  `pairs_per_twin` valid pairs each (`select_pairs`), from `seed`."""
  rng = np.random.default_rng([seed, 0x1A7])
  twins = [augmenter(s, rng) for s in samples]
  batch_x = pad_samples(samples, spec, time_bucketing=False)
  batch_y = pad_samples([a.twin for a in twins], spec, time_bucketing=False)
  pairs = select_pairs(twins, batch_x.num_nodes, pairs_per_twin, pointer_hints, other_hints, rng)
  return InvarianceSet(batch_x, twin_steps(batch_y, pairs), pairs)


def chunks(data: InvarianceSet, size: int):
  """Slices of `size` originals (one shape: the last is filled with the first
  originals again, its extra rows weighted 0 through the pairs' mask)."""
  total = data.batch_x.batch_size
  for start in range(0, total, size):
    idx = np.arange(start, start + size) % total
    real = np.arange(start, start + size) < total
    take = lambda tree, axis=0: jax.tree_util.tree_map(  # noqa: E731
        lambda x: np.take(np.asarray(x), idx, axis=axis), tree)
    bx = data.batch_x
    batch_x = Batch(inputs=take(bx.inputs), hints=take(bx.hints, 1), outputs=take(bx.outputs),
                    lengths=np.asarray(bx.lengths)[idx], node_mask=np.asarray(bx.node_mask)[idx])
    pairs = take(data.pairs)
    pairs = pairs._replace(mask=pairs.mask * real[:, None])
    twins = TwinSteps(take(data.twins.inputs), take(data.twins.hints), take(data.twins.node_mask))
    yield InvarianceSet(batch_x, twins, pairs)


def _cos(x):
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def _retrieval(za, zb, target_a, target_b, valid_a, valid_b, weight):
  """Sums over anchors of one group. za `[..., Na, D]` candidates of x, zb
  `[..., Nb, D]` of x' (unit vectors), target_a / target_b `[...]` each anchor's
  partner index on x / x', valid_a / valid_b `[..., Na]` / `[..., Nb]`, weight `[...]`."""
  anchor_a = jnp.take_along_axis(za, target_a[..., None, None], -2)[..., 0, :]
  anchor_b = jnp.take_along_axis(zb, target_b[..., None, None], -2)[..., 0, :]
  sim_ab = jnp.einsum('...d,...nd->...n', anchor_a, zb)
  sim_ba = jnp.einsum('...d,...nd->...n', anchor_b, za)
  hit_ab = (jnp.argmax(jnp.where(valid_b, sim_ab, -BIG), -1) == target_b).astype(jnp.float32)
  hit_ba = (jnp.argmax(jnp.where(valid_a, sim_ba, -BIG), -1) == target_a).astype(jnp.float32)
  partner = jnp.take_along_axis(sim_ab, target_b[..., None], -1)[..., 0]
  is_other = valid_b & (jnp.arange(zb.shape[-2]) != target_b[..., None])
  return {'anchors': jnp.sum(weight), 'retrieved': jnp.sum(weight * (hit_ab + hit_ba) / 2),
          'partner_sim': jnp.sum(weight * partner),
          'other_sim': jnp.sum(weight[..., None] * jnp.where(is_other, sim_ab, 0.0)),
          'others': jnp.sum(weight[..., None] * is_other)}


def _decoded(logits, typ, loc, mask):
  """A hint prediction as discrete values; None where it is not compared (scalars)."""
  if typ == _Type.MASK:
    return logits > 0
  if typ == _Type.CATEGORICAL:
    return jnp.argmax(logits, -1)
  if typ in (_Type.POINTER, _Type.MASK_ONE) and loc != _Location.EDGE:
    # A distribution over nodes (node: each node's, graph: one); padding never chosen.
    shape = (mask.shape[0],) + (1,) * (logits.ndim - 2) + (mask.shape[1],)
    return jnp.argmax(jnp.where(mask.reshape(shape) > 0.5, logits, -BIG), -1)
  return None


def _agreement(spec: dict, step_x, step_y, nmap, mask_x, mask_y, weight_of: dict):
  """(agreeing, compared) sums over the regularised hints' predictions on the
  original nodes. nmap `[R, N]`; mask_x `[R, N]`, mask_y `[R, N']`; weight_of:
  hint -> `[R]` pair weight (0 where the pair is not valid for that hint)."""
  agree, compared = 0.0, 0.0
  for h, w in weight_of.items():
    _, loc, typ = spec[h]
    px = _decoded(step_x.hints[h], typ, loc, mask_x)
    py = _decoded(step_y.hints[h], typ, loc, mask_y)
    if px is None:
      continue
    through_map = typ in (_Type.POINTER, _Type.MASK_ONE)   # a node index: map it
    if through_map:
      px = jnp.take_along_axis(nmap, px.reshape(px.shape[0], -1), -1).reshape(px.shape)
    if loc == _Location.NODE and px.ndim == 2:
      py = jnp.take_along_axis(py, nmap, -1)              # twin's prediction at m(i)
      real = mask_x
    elif loc == _Location.EDGE:                             # [R, N', N'] -> at (m(i), m(j))
      py = jnp.take_along_axis(jnp.take_along_axis(py, nmap[:, :, None], 1), nmap[:, None, :], 2)
      real = mask_x[:, :, None] * mask_x[:, None, :]
    else:                                                   # one value per graph
      real = jnp.ones(px.shape[:1])
    same = (px == py).reshape(px.shape[0], -1)
    real = jnp.broadcast_to(real.reshape(real.shape[0], -1), same.shape)
    agree += jnp.sum(w[:, None] * real * same)
    compared += jnp.sum(w[:, None] * real)
  return agree, compared


def invariance_sums(net, step_net, spec: dict, params, critics, data: InvarianceSet,
                    pointer_hints: list, other_hints: list) -> dict:
  """Device side: the sums of `_SUMS`, per group ('node' and each pointer hint),
  for one chunk. `critics`: Hint-ReLIC's (pair, node) critic layers, or None."""
  batch_x, twins, pairs = data
  rng = jax.random.PRNGKey(0)
  out = net.apply(params, rng, batch_x.inputs, batch_x.hints, batch_x.lengths,
                  batch_x.node_mask, is_training=True, return_latents=True)
  step_x, step_y = one_step_outputs(step_net, spec, params, rng, batch_x, out.latents, twins,
                                    pairs, 1)
  bk, m = pairs.t.shape
  unflat = lambda x: x.reshape((bk, m) + x.shape[1:])      # noqa: E731
  n = batch_x.num_nodes
  nmap = jnp.broadcast_to(pairs.node_map[:, None, :], (bk, m, n))
  mask_x = jnp.broadcast_to(batch_x.node_mask[:, None, :] > 0.5, (bk, m, n))
  mask_y = jnp.broadcast_to(twins.node_mask[:, None, :] > 0.5, (bk, m, twins.node_mask.shape[1]))
  arange = jnp.broadcast_to(jnp.arange(n), nmap.shape)
  groups = {}

  def group(name, zx, zy, target_x, target_y, weight, critic_layers):
    sums = _retrieval(_cos(zx), _cos(zy), target_x, target_y, mask_x[..., None, :],
                      mask_y[..., None, :], weight)
    sums['retrieved_critic'] = (_retrieval(_embed(critic_layers, zx), _embed(critic_layers, zy),
                                           target_x, target_y, mask_x[..., None, :],
                                           mask_y[..., None, :], weight)['retrieved']
                                if critic_layers is not None else jnp.zeros(()))
    groups[name] = sums

  if other_hints:
    node_x, node_y = unflat(step_x.node_reps), unflat(step_y.node_reps)   # [BK, M, N(') , D]
    weight = (pairs.mask * pairs.node_valid)[..., None] * mask_x
    # Anchor i on x (partner m(i) on x'): candidates are nodes, the same for every i.
    group('node', jnp.broadcast_to(node_x[:, :, None], (bk, m, n) + node_x.shape[2:]),
          jnp.broadcast_to(node_y[:, :, None], (bk, m, n) + node_y.shape[2:]), arange, nmap,
          weight, None if critics is None else critics[1])
  for h in pointer_hints:
    rx = unflat(step_x.pair_reps[h])                                       # [BK, M, N, N, H]
    ry = jnp.take_along_axis(unflat(step_y.pair_reps[h]), nmap[..., None, None], 2)
    target = batch_x.hints[h][pairs.t + 1, jnp.arange(bk)[:, None]].astype(jnp.int32)
    weight = (pairs.mask * pairs.pointer_valid[h])[..., None] * mask_x
    group(h, rx, ry, target, jnp.take_along_axis(nmap, target, -1), weight,
          None if critics is None else critics[0])

  flat_w = lambda w: w.reshape(-1)                          # noqa: E731  [BK, M] -> [R]
  weight_of = {h: flat_w(pairs.mask * pairs.pointer_valid[h]) for h in pointer_hints}
  weight_of.update({h: flat_w(pairs.mask * pairs.node_valid) for h in other_hints})
  agree, compared = _agreement(spec, step_x, step_y, jnp.repeat(pairs.node_map, m, 0),
                               jnp.repeat(batch_x.node_mask, m, 0),
                               jnp.repeat(twins.node_mask, m, 0), weight_of)
  groups['predictions'] = {'agree': agree, 'compared': compared}
  return groups


def summarise(total: dict, with_critics: bool) -> dict:
  """The metrics of summed `invariance_sums`: overall (anchors of every group
  pooled) and per group."""
  def ratio(a, b):
    return float(a / b) if b > 0 else None

  per_group = {}
  pooled = {k: 0.0 for k in _SUMS}
  for name, sums in total.items():
    if name == 'predictions':
      continue
    for k in sums:
      pooled[k] += float(sums[k])
    per_group[name] = {'anchors': int(sums['anchors']),
                       'retrieval': ratio(sums['retrieved'], sums['anchors']),
                       'similarity_partner': ratio(sums['partner_sim'], sums['anchors']),
                       'similarity_other': ratio(sums['other_sim'], sums['others'])}
    if with_critics:
      per_group[name]['retrieval_critic'] = ratio(sums['retrieved_critic'], sums['anchors'])
  predictions = total.get('predictions', {'agree': 0.0, 'compared': 0.0})
  summary = {'anchors': int(pooled['anchors']),
             'retrieval': ratio(pooled['retrieved'], pooled['anchors']),
             'agreement': ratio(predictions['agree'], predictions['compared']),
             'similarity_partner': ratio(pooled['partner_sim'], pooled['anchors']),
             'similarity_other': ratio(pooled['other_sim'], pooled['others']),
             'per_group': per_group}
  if with_critics:
    summary['retrieval_critic'] = ratio(pooled['retrieved_critic'], pooled['anchors'])
  return summary


def add_sums(total: Optional[dict], sums: dict) -> dict:
  """`total` + `sums` (nested dicts of scalars), on the host."""
  sums = jax.device_get(sums)
  if total is None:
    return {g: {k: float(v) for k, v in s.items()} for g, s in sums.items()}
  return {g: {k: total[g][k] + float(v) for k, v in s.items()} for g, s in sums.items()}
