"""Padded, fixed-shape batches of `Sample`s.

Shapes are padded to a small ladder of buckets (nodes and time) so that a jitted
step compiles a bounded number of times. Padding never changes a real
prediction or loss: the model and the losses mask padded nodes with
`node_mask` and padded steps with `lengths`.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

from nar.sample import Sample, Spec
from clrs._src import specs as clrs_specs

_Type = clrs_specs.Type
_Loc = clrs_specs.Location


class Batch(NamedTuple):
  """Batch-major inputs/outputs, time-major hints (as dm-clrs).

  inputs/outputs: name -> `[B, N, ...]` (node), `[B, N, N, ...]` (edge), `[B, ...]` (graph).
  hints: name -> `[T, B, ...]`. Pointers are int32 node indices; permutation
  pointers are `[B, N, N]` one-hot matrices; mask_one / categorical are one-hot.
  lengths: `[B]` int32 true trajectory lengths. node_mask: `[B, N]` float32, 1 = real.
  """
  inputs: dict
  hints: dict
  outputs: dict
  lengths: np.ndarray
  node_mask: np.ndarray

  @property
  def batch_size(self) -> int:
    return int(self.lengths.shape[0])

  @property
  def num_nodes(self) -> int:
    return int(self.node_mask.shape[1])

  @property
  def num_steps(self) -> int:
    return int(next(iter(self.hints.values())).shape[0])


def bucket(value: int, minimum: int = 1) -> int:
  """Smallest rung >= value of the ladder 1, 2, 3, 4, 6, 8, 12, 16, 24, ...

  (powers of two and 1.5x powers of two: at most 33% padding, few shapes)."""
  value = max(int(value), minimum)
  if value <= 4:
    return value
  p = 2 ** math.floor(math.log2(value))
  for rung in (p, 3 * p // 2, 2 * p):
    if rung >= value:
      return rung
  raise AssertionError('unreachable')


def _is_pointer(typ: str) -> bool:
  return typ == _Type.POINTER


def _pad_to(x: np.ndarray, shape: Sequence[int], fill) -> np.ndarray:
  out = np.full(shape, fill, dtype=x.dtype)
  out[tuple(slice(0, s) for s in x.shape)] = x
  return out


def _padded_shape(x: np.ndarray, loc: str, typ: str, n: int, lead: int) -> list[int]:
  """Shape of one unbatched probe after node padding (lead = leading non-node dims)."""
  shape = list(x.shape)
  node_dims = {_Loc.NODE: 1, _Loc.EDGE: 2, _Loc.GRAPH: 0}[loc]
  if typ == _Type.PERMUTATION_POINTER:
    node_dims = 2
  for d in range(lead, lead + node_dims):
    shape[d] = n
  return shape


def pad_samples(samples: Sequence[Sample], spec: Spec, *, num_nodes: int | None = None,
                num_steps: int | None = None, time_bucketing: bool = True,
                node_bucketing: bool = False) -> Batch:
  """Stacks samples into a `Batch`, padding nodes to `num_nodes` (default: the
  largest sample, bucketed if `node_bucketing`) and time to `num_steps`
  (default: the longest trajectory, bucketed if `time_bucketing`)."""
  if not samples:
    raise ValueError('pad_samples needs at least one sample')
  n_max = max(s.num_nodes for s in samples)
  t_max = max(s.length for s in samples)
  n = num_nodes if num_nodes is not None else (bucket(n_max) if node_bucketing else n_max)
  t = num_steps if num_steps is not None else (bucket(t_max, 2) if time_bucketing else t_max)
  if n < n_max or t < t_max:
    raise ValueError(f'cannot pad samples of {n_max} nodes / {t_max} steps to {n} / {t}')
  b = len(samples)

  def stack(stage_of: str, lead: int) -> dict:
    out = {}
    for name, (stage, loc, typ) in spec.items():
      if stage != stage_of:
        continue
      arrays = [getattr(s, stage_of + 's')[name] for s in samples]
      padded = []
      for x in arrays:
        x = np.asarray(x)
        if _is_pointer(typ):
          x = x.astype(np.int32)
        else:
          x = x.astype(np.float32)
        shape = _padded_shape(x, loc, typ, n, lead)
        fill = 0
        if stage_of == 'hint':
          shape[0] = t
        if typ in (_Type.MASK,) and stage_of != 'input':
          fill = clrs_specs.OutputClass.MASKED  # padded entries never scored
        padded.append(_pad_to(x, shape, fill))
        if stage_of == 'hint' and x.shape[0] < t:
          # Time padding repeats the last state: harmless (masked by lengths)
          # and keeps pointers/one-hots well formed.
          padded[-1][x.shape[0]:] = padded[-1][x.shape[0] - 1]
      out[name] = np.stack(padded, axis=1 if stage_of == 'hint' else 0)
    return out

  lengths = np.array([s.length for s in samples], dtype=np.int32)
  node_mask = np.zeros((b, n), np.float32)
  for i, s in enumerate(samples):
    node_mask[i, :s.num_nodes] = 1.0
  return Batch(inputs=stack('input', 0), hints=stack('hint', 1),
               outputs=stack('output', 0), lengths=lengths, node_mask=node_mask)


def unpad_outputs(outputs: dict, batch: Batch, spec: Spec) -> list[dict]:
  """Splits batched output arrays back into per-sample arrays without node padding."""
  result = []
  for i in range(batch.batch_size):
    n = int(batch.node_mask[i].sum())
    sample = {}
    for name, x in outputs.items():
      _, loc, typ = spec[name]
      nd = {_Loc.NODE: 1, _Loc.EDGE: 2, _Loc.GRAPH: 0}[loc]
      if typ == _Type.PERMUTATION_POINTER:
        nd = 2
      sample[name] = np.asarray(x[i])[tuple([slice(0, n)] * nd)]
    result.append(sample)
  return result
