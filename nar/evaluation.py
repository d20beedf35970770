"""Scoring: dm-clrs's `clrs.evaluate`, streamed over batches and aware of padding.

`hard_outputs` is dm-clrs's hard postprocessing (argmax, thresholds, Sinkhorn
with 50 more steps for permutations), jittable. `ScoreAccumulator` sums the
sufficient statistics of each output's metric over batches (F1 counts for masks,
correct/total for pointers and one-hot types, squared error for scalars), so the
final score equals `clrs.evaluate` on the concatenated, unpadded predictions.
"""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np

from nar import clrs_import  # noqa: F401
from clrs._src import specs as clrs_specs

from nar.model import SINKHORN_STEPS_EVAL, SINKHORN_TEMPERATURE, log_sinkhorn

_Loc = clrs_specs.Location
_Type = clrs_specs.Type
_MASKED = clrs_specs.OutputClass.MASKED


def hard_outputs(spec: dict, logits: dict, node_mask: jax.Array) -> dict:
  """Hard predictions: pointers as indices, masks as 0/1, one-hot types as
  one-hot, permutation pointers as one-hot matrices."""
  out = {}
  for name, x in logits.items():
    _, _, typ = spec[name]
    if typ == _Type.SCALAR:
      out[name] = x
    elif typ == _Type.MASK:
      out[name] = (x > 0.0).astype(jnp.float32)
    elif typ in (_Type.MASK_ONE, _Type.CATEGORICAL):
      out[name] = jax.nn.one_hot(jnp.argmax(x, -1), x.shape[-1])
    elif typ == _Type.POINTER:
      out[name] = jnp.argmax(x, -1).astype(jnp.int32)
    elif typ == _Type.PERMUTATION_POINTER:
      p = jnp.exp(log_sinkhorn(x, SINKHORN_STEPS_EVAL, SINKHORN_TEMPERATURE, node_mask))
      out[name] = jax.nn.one_hot(jnp.argmax(p, -1), p.shape[-1])
    else:
      raise ValueError(f'unknown type {typ}')
  return out


def fuse_permutations(spec: dict, outputs: dict) -> dict:
  """dm-clrs `_reduce_permutations_dict`: permutation pointer + its `_mask`
  -> a plain pointer (self-pointer where the mask is on). numpy."""
  out = {}
  for name, x in outputs.items():
    if name.endswith('_mask') and spec.get(name[:-5], (None, None, None))[2] == \
        _Type.PERMUTATION_POINTER:
      continue
    if spec[name][2] == _Type.PERMUTATION_POINTER:
      mask = np.asarray(outputs[name + '_mask'])
      x = np.asarray(x)
      out[name] = np.where(mask > 0.5, np.arange(x.shape[-1]), np.argmax(x, -1))
    else:
      out[name] = np.asarray(x)
  return out


def _validity(loc: str, node_mask: np.ndarray) -> np.ndarray:
  if loc == _Loc.NODE:
    return node_mask > 0.5
  if loc == _Loc.EDGE:
    return (node_mask[:, :, None] > 0.5) & (node_mask[:, None, :] > 0.5)
  return np.ones(node_mask.shape[:1], bool)


class ScoreAccumulator:
  """Accumulates output scores over batches; `result()` = `clrs.evaluate(...)`."""

  def __init__(self, spec: dict):
    self.spec = spec
    self.stats = collections.defaultdict(lambda: np.zeros(3, np.float64))
    self.num_samples = 0

  def add(self, truth: dict, pred: dict, node_mask: np.ndarray) -> None:
    """truth: batch outputs (as in `Batch.outputs`); pred: `hard_outputs`."""
    node_mask = np.asarray(node_mask)
    truth = fuse_permutations(self.spec, {k: np.asarray(v) for k, v in truth.items()})
    pred = fuse_permutations(self.spec, {k: np.asarray(v) for k, v in pred.items()})
    self.num_samples += node_mask.shape[0]
    for name, t in truth.items():
      _, loc, typ = self.spec[name]
      p = pred[name]
      valid = _validity(loc, node_mask)
      if typ == _Type.PERMUTATION_POINTER:
        typ = _Type.POINTER
      st = self.stats[name]
      if typ == _Type.SCALAR:
        st += [np.sum(((p - t) ** 2) * valid), np.sum(valid), 0]
      elif typ == _Type.MASK:
        m = valid & (t != _MASKED)
        st += [np.sum((p > 0.5) & (t > 0.5) & m), np.sum((p > 0.5) & (t < 0.5) & m),
               np.sum((p < 0.5) & (t > 0.5) & m)]
      elif typ in (_Type.MASK_ONE, _Type.CATEGORICAL):
        if typ == _Type.MASK_ONE and loc == _Loc.NODE:
          valid = np.ones(node_mask.shape[:1], bool)  # one decision per graph
        m = np.all(t != _MASKED, axis=-1) & valid
        st += [np.sum((np.argmax(p, -1) == np.argmax(t, -1)) & m), np.sum(m), 0]
      elif typ == _Type.POINTER:
        st += [np.sum((p == t) & valid), np.sum(valid), 0]
      else:
        raise ValueError(f'unknown type {typ}')

  def result(self) -> dict:
    scores = {}
    for name, (a, b, c) in self.stats.items():
      typ = self.spec[name][2]
      if typ == _Type.MASK:
        tp, fp, fn = a, b, c
        precision = tp / (tp + fp) if tp + fp > 0 else 1.0
        recall = tp / (tp + fn) if tp + fn > 0 else 1.0
        scores[name] = (2 * precision * recall / (precision + recall)
                        if precision + recall > 0 else 0.0)
      else:
        scores[name] = a / b if b > 0 else float('nan')
    scores = {k: float(v) for k, v in scores.items()}
    scores['score'] = float(np.mean(list(scores.values()))) if scores else float('nan')
    return scores
