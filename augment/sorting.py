"""Augmentation rules for the sorting family (dm-clrs `algorithms/sorting.py`).

Every sorting hint set contains `pred_h`, the array order as a linked list (the
node at position k points at the node at position k-1, position 0 at itself).
An original node agrees on `pred_h` only while the nodes before it in the array
are originals, so new elements must stay at the END of the array during the
steps we want to keep: that decides where they go and, per algorithm, which
values keep them there.

Rules read the keys from `sample.inputs` (not `sample.args`: dm-clrs sorts its
argument in place, so after a run the args are already sorted).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from augment.rule import RuleEntry, TwinArgs, num_to_add, register, values_above, values_below
from nar.sample import Sample


def key_args_from_inputs(inputs: Mapping[str, np.ndarray]) -> tuple[Any, ...]:
  """(A,) from the `key` input (sorting, minimum, quickselect, kadane)."""
  return (np.array(inputs['key'], dtype=np.float64),)


def _append(key: np.ndarray, extra: np.ndarray) -> TwinArgs:
  twin = np.concatenate([key, extra.astype(key.dtype)])
  return TwinArgs(args=(twin,), node_map=np.arange(key.shape[0]))


def _key(sample: Sample) -> np.ndarray:
  return key_args_from_inputs(sample.inputs)[0]


def append_any(sample: Sample, rng: np.random.Generator, *,
               max_added: Optional[int] = None) -> TwinArgs:
  """Appends elements of any value (drawn like the sampler's, U[0, 1)).

  Insertion sort's step j only reads A[0..j]; the appended elements are
  inserted after the last original step, so every original step is
  reproduced at t' = t whatever their values.
  """
  key = _key(sample)
  k = num_to_add(key.shape[0], rng, max_added)
  lo, hi = min(0.0, float(key.min())), max(1.0, float(key.max()))
  return _append(key, rng.uniform(lo, hi, size=k))


def append_larger(sample: Sample, rng: np.random.Generator, *,
                  max_added: Optional[int] = None) -> TwinArgs:
  """Appends elements larger than every original key (in random order)."""
  key = _key(sample)
  k = num_to_add(key.shape[0], rng, max_added)
  return _append(key, values_above(key.max(), k, rng))


def append_smaller(sample: Sample, rng: np.random.Generator, *,
                   max_added: Optional[int] = None) -> TwinArgs:
  """Appends elements smaller than every original key (heapsort's build phase
  never swaps a parent with a smaller child, so they stay at the end)."""
  key = _key(sample)
  k = num_to_add(key.shape[0], rng, max_added)
  return _append(key, values_below(key.min(), k, rng))


def append_larger_quicksort(sample: Sample, rng: np.random.Generator, *,
                            max_added: Optional[int] = 2) -> TwinArgs:
  """`append_larger` with at most 2 elements by default: each appended pivot
  costs one extra partition over all originals (about n extra twin steps)."""
  return append_larger(sample, rng, max_added=max_added)


register(RuleEntry(
    algorithm='insertion_sort', rule=append_any, args_from_inputs=key_args_from_inputs,
    description='appends 1..max(2, n//4) elements of any value (U[0,1)) at the end',
    reason='step j reads only A[0..j]: the original trajectory is the prefix of the '
           "twin's (t' = t); the appended elements are inserted afterwards"))

register(RuleEntry(
    algorithm='bubble_sort', rule=append_larger, args_from_inputs=key_args_from_inputs,
    description='appends 1..max(2, n//4) elements larger than every key at the end',
    reason='large elements never move below the originals, but each pass of the '
           'twin starts with j on them: state alignment skips those extra steps; '
           'the transition into each new pass (j jumps to the last element, an '
           'added one in the twin) has no valid twin partner for j'))

register(RuleEntry(
    algorithm='heapsort', rule=append_smaller, args_from_inputs=key_args_from_inputs,
    description='appends 1..max(2, n//4) elements smaller than every key at the end',
    reason='small leaves never rise, so the build-max-heap phase is reproduced on '
           'the originals for pred_h, parent, i, j, largest and phase; heap_size '
           'points at the last heap element, an added node during the build, so no '
           'step is valid for all hints; the extraction phase swaps the root with '
           'the last element (an added one) and diverges at once. No cheap input '
           'reproduces extraction steps: the heap positions are fixed by array '
           'indices, so any added element inside the heap changes the tree'))

register(RuleEntry(
    algorithm='quicksort', rule=append_larger_quicksort, args_from_inputs=key_args_from_inputs,
    description='appends 1..2 elements larger than every key at the end',
    reason='the pivot is the last element: an added pivot partitions with the '
           'originals all on its left without moving them, and recursion reaches '
           "quicksort(0, n-1), the original's call, after a few extra partitions "
           '(state alignment); more added elements would only lengthen the twin. '
           'Any element added inside the array sits before some original in the '
           'array order (pred_h) or is swapped into the originals by a partition'))
