"""Supervised CLRS losses (dm-clrs `losses.output_loss` / `losses.hint_loss`) with
padded nodes and steps masked out. Without padding the values equal dm-clrs's."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nar import clrs_import  # noqa: F401
from clrs._src import specs as clrs_specs

_Loc = clrs_specs.Location
_Type = clrs_specs.Type
_MASKED = clrs_specs.OutputClass.MASKED
_POSITIVE = clrs_specs.OutputClass.POSITIVE
EPS = 1e-12


def _validity(loc: str, typ: str, node_mask: jax.Array) -> jax.Array:
  """`[B, ...]` 1 where the entry belongs to real nodes only (node/edge/graph)."""
  if loc == _Loc.NODE:
    return node_mask
  if loc == _Loc.EDGE:
    return node_mask[:, :, None] * node_mask[:, None, :]
  return jnp.ones(node_mask.shape[:1])


def _elementwise(truth: jax.Array, pred: jax.Array, typ: str, n: int):
  """Per-entry loss and its own mask (dm-clrs `_hint_loss`), entries = truth's
  leading shape without the class axis."""
  if typ == _Type.SCALAR:
    return (pred - truth) ** 2, jnp.ones_like(pred)
  if typ == _Type.MASK:
    loss = jnp.maximum(pred, 0) - pred * truth + jnp.log1p(jnp.exp(-jnp.abs(pred)))
    return loss, (truth != _MASKED).astype(jnp.float32)
  if typ == _Type.MASK_ONE:
    # node-level mask_one: the class axis is the node axis.
    loss = -jnp.sum(truth * jax.nn.log_softmax(pred), axis=-1)
    return loss, jnp.ones_like(loss)
  if typ == _Type.CATEGORICAL:
    masked_truth = truth * (truth != _MASKED)
    loss = -jnp.sum(masked_truth * jax.nn.log_softmax(pred), axis=-1)
    return loss, jnp.any(truth == _POSITIVE, axis=-1).astype(jnp.float32)
  if typ == _Type.POINTER:
    loss = -jnp.sum(jax.nn.one_hot(truth, n) * jax.nn.log_softmax(pred), axis=-1)
    return loss, jnp.ones_like(loss)
  if typ == _Type.PERMUTATION_POINTER:
    loss = -jnp.sum(truth * pred, axis=-1)
    return loss, jnp.ones_like(loss)
  raise ValueError(f'unknown type {typ}')


def _entry_validity(loc: str, typ: str, node_mask: jax.Array) -> jax.Array:
  if typ == _Type.MASK_ONE and loc == _Loc.NODE:
    return jnp.ones(node_mask.shape[:1])        # one entry per graph
  return _validity(loc, typ, node_mask)


def output_loss(truth: jax.Array, pred: jax.Array, loc: str, typ: str,
                node_mask: jax.Array) -> jax.Array:
  """Mean loss of one output. truth/pred `[B, ...]`."""
  n = node_mask.shape[1]
  loss, mask = _elementwise(truth, pred, typ, n)
  valid = _entry_validity(loc, typ, node_mask)
  mask = mask * valid.reshape(valid.shape + (1,) * (loss.ndim - valid.ndim))
  if typ in (_Type.MASK_ONE, _Type.CATEGORICAL):
    # dm-clrs: summed cross-entropy over the number of positive labels.
    return jnp.sum(loss * mask) / jnp.maximum(jnp.sum((truth == _POSITIVE) * _expand(mask, truth)), EPS)
  return jnp.sum(loss * mask) / jnp.maximum(jnp.sum(mask), EPS)


def _expand(mask: jax.Array, like: jax.Array) -> jax.Array:
  return mask.reshape(mask.shape + (1,) * (like.ndim - mask.ndim))


def hint_loss(truth: jax.Array, preds: jax.Array, loc: str, typ: str, lengths: jax.Array,
              node_mask: jax.Array) -> jax.Array:
  """Mean loss of one hint. truth `[T, B, ...]`, preds `[T-1, B, ...]` (predictions
  of steps 1..T-1); steps at or past a sample's length are masked."""
  n = node_mask.shape[1]
  steps = preds.shape[0]
  loss, mask = _elementwise(truth[1:steps + 1], preds, typ, n)
  valid = _entry_validity(loc, typ, node_mask)[None]
  not_done = (lengths[None, :] > jnp.arange(steps)[:, None] + 1).astype(jnp.float32)
  mask = mask * _expand(valid, loss) * _expand(not_done, loss)
  return jnp.sum(loss * mask) / jnp.maximum(jnp.sum(mask), EPS)


def supervised_loss(spec: dict, net_out, batch, hint_loss_weight: float = 1.0):
  """Sum of output and hint losses (dm-clrs BaselineModel._loss).
  Returns (total, dict of per-probe losses)."""
  terms = {}
  for name, logits in net_out.outputs.items():
    _, loc, typ = spec[name]
    terms['output/' + name] = output_loss(batch.outputs[name], logits, loc, typ, batch.node_mask)
  for name, logits in net_out.hints.items():
    _, loc, typ = spec[name]
    terms['hint/' + name] = hint_loss_weight * hint_loss(
        batch.hints[name], logits, loc, typ, batch.lengths, batch.node_mask)
  total = sum(terms.values())
  return total, terms
