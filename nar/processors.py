"""Processors: our fast MPNN family (Triplet-GMPNN by default) and dm-clrs's others.

`MPNNWeights` creates the parameters of dm-clrs's `MPNN` processor with the same
names; `mpnn_step` is the same mathematics as dm-clrs `PGN.__call__` with an
all-ones adjacency, rearranged to do less work:
  * every linear map of the edge features goes through `FoldedEdges`, so the
    static (input) part is projected once per sample, not once per step, and the
    per-step hint part as a few rank-C updates instead of an [N*N, H] x [H, H]
    matmul;
  * in the triplet max over the first node, terms that do not depend on that
    node are added after the max (max(a + c) = max(a) + c);
  * padded nodes (`node_mask` 0) never send messages nor take part in triplets.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import haiku as hk
import jax
import jax.numpy as jnp

from nar import clrs_import  # noqa: F401  (quiet TensorFlow first)
from clrs._src import processors as clrs_processors

from nar import registry
from nar.layers import Affine, Dense, LayerNorm, LayerNormParams, MLP, matmul, mlp_apply

BIG = 1e9
FAST_KINDS = {
    # kind: (use_triplets, gated)
    'mpnn': (False, False),
    'gmpnn': (False, True),
    'triplet_mpnn': (True, False),
    'triplet_gmpnn': (True, True),
}


class FoldedEdges:
  """Edge features `E = static + sum_k x_k @ w_k + sum_k b_k`, never materialised
  unless asked: a linear map `E @ W` is computed as
  `static_proj[key] + sum_k x_k @ (w_k @ W) + (sum_k b_k) @ W`.

  static: `[B, N, N, H]` (encoded inputs, may be None); static_proj: key -> `[B, N, N, K]`
  precomputed `static @ W_key`; channels: list of (x `[B, N, N, C]`, w `[C, H]`, b `[H]`);
  shape: `(B, N)`, for an algorithm with no edge feature at all (segments_intersect),
  whose edge features are zeros `[B, N, N, H]` as in dm-clrs.
  """

  def __init__(self, static: Optional[jax.Array], static_proj: dict,
               channels: list[tuple[jax.Array, jax.Array, jax.Array]],
               shape: Optional[tuple[int, int]] = None):
    self.static = static
    self.static_proj = static_proj
    self.channels = channels
    self.shape = shape

  def _empty(self) -> bool:
    return self.static is None and not self.channels

  def project(self, key: str, w: jax.Array, b: Optional[jax.Array] = None) -> jax.Array:
    if key in self.static_proj:
      out = self.static_proj[key]
    elif self.static is not None:
      out = matmul(self.static, w)
    else:
      out = 0.0
    bias = 0.0 if b is None else b
    for x, cw, cb in self.channels:
      out = out + _contract(x, cw @ w)
      bias = bias + cb @ w
    if self._empty() and key not in self.static_proj:
      b_, n_ = self.shape
      return jnp.broadcast_to(bias, (b_, n_, n_, w.shape[-1])).astype(w.dtype)
    return out + bias

  def materialise(self, width: Optional[int] = None) -> jax.Array:
    """E itself, `[B, N, N, H]` (zeros of `width` channels when there is no edge feature)."""
    if self._empty() and width is not None:
      b_, n_ = self.shape
      return jnp.zeros((b_, n_, n_, width))
    out = 0.0 if self.static is None else self.static
    for x, cw, cb in self.channels:
      out = out + _contract(x, cw) + cb
    return out


def _contract(x: jax.Array, w: jax.Array) -> jax.Array:
  """x `[..., C]` @ w `[C, K]`; for the common C = 1 a broadcast product, which
  XLA:CPU runs far faster than a dot with a contraction of size one."""
  if x.shape[-1] == 1:
    return x * w[0]
  return matmul(x, w)


# The [A, N, N, F] sums of one sample that `max_plus` reduces at once (16 MiB of
# float32). XLA:CPU materialises the whole broadcast sum while reducing it: at
# n = 512 that is 4.3 GB a sample; past this many it runs over blocks of `a`.
MAX_PLUS_BLOCK_ELEMENTS = 1 << 22


@jax.custom_vjp
def max_plus(u: jax.Array, v: jax.Array) -> jax.Array:
  """out[b, i, j] = max_a u[b, a, i] + v[b, a, j] (trailing feature axis kept).

  u, v: `[B, A, N, F]` -> `[B, N, N, F]`. Its gradient is autodiff's of
  `jnp.max` (split equally between tied maxima, as in dm-clrs), but stores only
  u and v, and recomputes the `[B, A, N, N, F]` sums and their maximum in the
  backward, instead of storing a comparison mask of that
  size (4x faster inside the training scan) or an argmax (a variadic reduction,
  slow on XLA:CPU). Large
  problems (evaluation at n >= 128) reduce over blocks of `a` with a running
  maximum: the same values (a maximum is exact), a bounded memory."""
  return _max_plus_values(u, v)


def _max_plus_values(u: jax.Array, v: jax.Array) -> jax.Array:
  _, num_a, n, f = u.shape
  block = max(1, MAX_PLUS_BLOCK_ELEMENTS // (n * v.shape[2] * f))
  if block >= num_a:
    return _max_of_sums(u, v)
  return _max_plus_blocks(u, v, block)


def _max_of_sums(u: jax.Array, v: jax.Array) -> jax.Array:
  return jnp.max(u[:, :, :, None, :] + v[:, :, None, :, :], axis=1)


def _max_plus_blocks(u: jax.Array, v: jax.Array, block: int) -> jax.Array:
  """`max_plus` as a scan over blocks of `block` values of `a`."""
  b, num_a, n, f = u.shape
  pad = (-num_a) % block
  if pad:     # -inf + anything = -inf: a padded `a` never wins the maximum
    widths = ((0, 0), (0, pad), (0, 0), (0, 0))
    u = jnp.pad(u, widths, constant_values=-jnp.inf)
    v = jnp.pad(v, widths, constant_values=-jnp.inf)

  def blocks(x):     # [B, A, N, F] -> [A / block, B, block, N, F]
    return jnp.swapaxes(x.reshape(b, -1, block, x.shape[2], f), 0, 1)

  def step(best, uv):
    ub, vb = uv
    return jnp.maximum(best, _max_of_sums(ub, vb)), None
  init = jnp.full((b, n, v.shape[2], f), -jnp.inf, jnp.result_type(u, v))
  out, _ = jax.lax.scan(step, init, (blocks(u), blocks(v)))
  return out


def _max_plus_fwd(u, v):
  return _max_plus_values(u, v), (u, v)


def _max_plus_bwd(residuals, g):
  u, v = residuals
  # The maximum is taken again from the same recomputed sums rather than read
  # from the forward: XLA may keep excess precision (bfloat16 sums in float32)
  # differently in the two programs, and a forward maximum that equals none of
  # the backward's sums would leave no hit (a division by zero).
  sums = u[:, :, :, None, :] + v[:, :, None, :, :]                          # [B, A, I, J, F]
  hit = sums == jnp.max(sums, axis=1, keepdims=True)
  share = g / jnp.sum(hit, axis=1, dtype=g.dtype)                          # ties split g
  routed = jnp.where(hit, share[:, None], 0.0)
  return jnp.sum(routed, axis=3), jnp.sum(routed, axis=2)


max_plus.defvjp(_max_plus_fwd, _max_plus_bwd)


@jax.custom_vjp
def max_over_senders(msgs: jax.Array, sender_ok: jax.Array) -> jax.Array:
  """out[b, i] = max over senders a with sender_ok[b, a] of msgs[b, a, i] (-BIG if none).

  msgs `[B, A, N, H]`, sender_ok `[B, A]` bool -> `[B, N, H]`. The gradient is
  autodiff's of `jnp.max` of the masked messages (split equally between tied
  maxima, nothing to masked senders), computed in fewer passes over the
  `[B, A, N, H]` messages than autodiff's (which writes out the tie mask, the
  broadcast share and their product: 4-12% of a training step on a CPU)."""
  return jnp.max(jnp.where(sender_ok[:, :, None, None], msgs, -BIG), axis=1)


def _max_over_senders_fwd(msgs, sender_ok):
  return max_over_senders(msgs, sender_ok), (msgs, sender_ok)


def _max_over_senders_bwd(residuals, g):
  msgs, sender_ok = residuals
  # The maximum is taken again here rather than stored (see `_max_plus_bwd`).
  masked = jnp.where(sender_ok[:, :, None, None], msgs, -BIG)
  hit = masked == jnp.max(masked, axis=1, keepdims=True)
  share = g / jnp.sum(hit, axis=1, dtype=g.dtype)
  routed = jnp.where(hit & sender_ok[:, :, None, None], share[:, None], 0.0)
  return routed.astype(msgs.dtype), None


max_over_senders.defvjp(_max_over_senders_fwd, _max_over_senders_bwd)


class MPNNParams(NamedTuple):
  m_1: Affine
  m_2: Affine
  m_e: Affine
  m_g: Affine
  o1: Affine
  o2: Affine
  triplet: Optional[tuple[Affine, ...]]   # t_1, t_2, t_3, t_e_1, t_e_2, t_e_3, t_g, o3
  mlp: list[Affine]
  ln: Optional[LayerNormParams]
  gate: Optional[tuple[Affine, Affine, Affine]]


class MPNNWeights(hk.Module):
  """Creates dm-clrs `MPNN(..., msgs_mlp_sizes=[H, H])` parameters, same names."""

  def __init__(self, hidden: int, use_triplets: bool, gated: bool, use_ln: bool = True,
               nb_triplet_fts: int = 8, name: str = 'mpnn_aggr_clrs_processor'):
    super().__init__(name=name)
    self.hidden = hidden
    self.use_triplets = use_triplets
    self.gated = gated
    self.use_ln = use_ln
    self.nb_triplet_fts = nb_triplet_fts

  def __call__(self, z_size: int, edge_size: int, graph_size: int) -> MPNNParams:
    h, t = self.hidden, self.nb_triplet_fts
    # Creation order = dm-clrs's, so Haiku's automatic names (linear, linear_1, ...) match.
    m_1, m_2 = Dense(h).params(z_size), Dense(h).params(z_size)
    m_e, m_g = Dense(h).params(edge_size), Dense(h).params(graph_size)
    o1, o2 = Dense(h).params(z_size), Dense(h).params(h)
    triplet = None
    if self.use_triplets:
      tz = [Dense(t).params(z_size) for _ in range(3)]
      te = [Dense(t).params(edge_size) for _ in range(3)]
      tg = Dense(t).params(graph_size)
      o3 = Dense(h).params(t)
      triplet = (*tz, *te, tg, o3)
    mlp = MLP([h, h]).params(h)
    ln = LayerNorm().params(h) if self.use_ln else None
    gate = None
    if self.gated:
      # dm-clrs: the last gate layer has bias -3, so the gate starts mostly closed.
      gate = (Dense(h).params(z_size), Dense(h).params(h),
              Dense(h, b_init=hk.initializers.Constant(-3.0)).params(h))
    return MPNNParams(m_1, m_2, m_e, m_g, o1, o2, triplet, mlp, ln, gate)


def mpnn_edge_consumers(p: MPNNParams) -> dict[str, jax.Array]:
  """Weights applied to the edge features, for precomputing static projections."""
  out = {'proc/m_e': p.m_e.w}
  if p.triplet is not None:
    out['proc/t_e'] = jnp.concatenate([p.triplet[3].w, p.triplet[4].w, p.triplet[5].w], -1)
  return out


def mpnn_step(p: MPNNParams, node_fts: jax.Array, edges: FoldedEdges, graph_fts: jax.Array,
              hidden: jax.Array, node_mask: jax.Array) -> tuple[jax.Array, Optional[jax.Array]]:
  """One processor step. node_fts, hidden: `[B, N, H]`; graph_fts `[B, H]`;
  node_mask `[B, N]`. Returns (next hidden `[B, N, H]`, triplet edge messages
  `[B, N, N, H]` or None)."""
  z = jnp.concatenate([node_fts, hidden], axis=-1)
  msg_1, msg_2 = p.m_1(z), p.m_2(z)
  msg_e = edges.project('proc/m_e', p.m_e.w, p.m_e.b)
  msg_g = p.m_g(graph_fts)
  sender_ok = node_mask > 0.5                                   # [B, N]

  tri_msgs = None
  if p.triplet is not None:
    t_1, t_2, t_3, t_e_1, t_e_2, t_e_3, t_g, o3 = p.triplet
    nt = t_1.w.shape[-1]
    te = edges.project('proc/t_e', jnp.concatenate([t_e_1.w, t_e_2.w, t_e_3.w], -1),
                       jnp.concatenate([t_e_1.b, t_e_2.b, t_e_3.b], -1))
    tri_e_1, tri_e_2, tri_e_3 = te[..., :nt], te[..., nt:2 * nt], te[..., 2 * nt:]
    tri_1 = t_1(z) + jnp.where(sender_ok, 0.0, -BIG)[..., None]   # [B, A, T]
    # max over the first node a of (t1[a] + te1[a, i] + te2[a, j]); the rest after.
    tri = (max_plus(tri_1[:, :, None, :] + tri_e_1, tri_e_2) + t_2(z)[:, :, None, :] +
           t_3(z)[:, None, :, :] + tri_e_3 + t_g(graph_fts)[:, None, None, :])
    tri_msgs = jax.nn.relu(o3(tri))

  msgs = (msg_1[:, None, :, :] + msg_2[:, :, None, :] + msg_e + msg_g[:, None, None, :])
  msgs = mlp_apply(p.mlp, jax.nn.relu(msgs))
  msgs = max_over_senders(msgs, sender_ok)                       # [B, N, H]

  ret = jax.nn.relu(p.o1(z) + p.o2(msgs))
  if p.ln is not None:
    ret = p.ln(ret)
  if p.gate is not None:
    g1, g2, g3 = p.gate
    gate = jax.nn.sigmoid(g3(jax.nn.relu(g1(z) + g2(msgs))))
    ret = ret * gate + hidden * (1 - gate)
  return ret, tri_msgs


@dataclasses.dataclass(frozen=True)
class ProcessorConfig:
  kind: str = 'triplet_gmpnn'
  hidden: int = 128
  use_ln: bool = True
  nb_triplet_fts: int = 8
  nb_heads: int = 1

  @property
  def is_fast(self) -> bool:
    return self.kind in FAST_KINDS

  def returns_edges(self) -> bool:
    added = registry.processors().get(self.kind)
    return added.returns_edges if added else 'triplet' in self.kind

  def clrs_factory(self):
    """`factory(out_size)` -> the processor module: a registered one, or dm-clrs's."""
    added = registry.processors().get(self.kind)
    if added is not None:
      return added.factory
    return clrs_processors.get_processor_factory(
        self.kind, use_ln=self.use_ln, nb_triplet_fts=self.nb_triplet_fts,
        nb_heads=self.nb_heads)
