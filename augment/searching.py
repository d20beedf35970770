"""Augmentation rules for the searching family (dm-clrs `algorithms/searching.py`).

`binary_search` and `minimum` have `pred_h` moved to the input `pred`, so their
hints are only pointers into the array (low/high/mid, min_h/i).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from augment.rule import RuleEntry, TwinArgs, insert_nodes, num_to_add, register
from augment.sorting import append_larger, key_args_from_inputs
from nar.sample import Sample


def search_args_from_inputs(inputs: Mapping[str, np.ndarray]) -> tuple[Any, ...]:
  return (float(np.asarray(inputs['target'])), np.array(inputs['key'], dtype=np.float64))


def append_any(sample: Sample, rng: np.random.Generator, *,
               max_added: Optional[int] = None) -> TwinArgs:
  """Minimum scans left to right: elements appended at the end, of any value,
  are read after the original trajectory (t' = t)."""
  key = key_args_from_inputs(sample.inputs)[0]
  k = num_to_add(key.shape[0], rng, max_added)
  lo, hi = min(0.0, float(key.min())), max(1.0, float(key.max()))
  twin = np.concatenate([key, rng.uniform(lo, hi, size=k)])
  return TwinArgs(args=(twin,), node_map=np.arange(key.shape[0]))


def _search_states(x: float, a: np.ndarray) -> list[tuple[int, int]]:
  """(low, high) after each step of dm-clrs's binary search (mid follows)."""
  low, high = 0, a.shape[0] - 1
  states = [(low, high)]
  while low < high:
    mid = (low + high) // 2
    if x <= a[mid]:
      high = mid
    else:
      low = mid + 1
    states.append((low, high))
  return states


def _matched_transitions(x: float, key: np.ndarray, twin: np.ndarray,
                         node_map: np.ndarray) -> int:
  """How many original transitions re-appear, mapped, as twin transitions."""
  def full(s, m=None):
    lo, hi = s
    mid = (lo + hi) // 2
    return (lo, hi, mid) if m is None else (int(m[lo]), int(m[hi]), int(m[mid]))
  orig = [full(s, node_map) for s in _search_states(x, key)]
  tw = [full(s) for s in _search_states(x, twin)]
  twin_steps = set(zip(tw[:-1], tw[1:]))
  return sum((a, b) in twin_steps for a, b in zip(orig[:-1], orig[1:]))


def sorted_insertions(sample: Sample, rng: np.random.Generator, *,
                      max_added: Optional[int] = None, candidates: int = 48) -> TwinArgs:
  """Inserts elements into the sorted array (values between their neighbours)
  where the search path of the twin meets the original's best.

  The search path depends on the array length, so most insertions change every
  step. The rule draws `candidates` random insertions (count 1..max_added,
  positions and values), scores each by a cheap simulation of the search (the
  core still re-executes dm-clrs to decide validity) and keeps the best.
  """
  x, key = search_args_from_inputs(sample.inputs)
  n = key.shape[0]
  lo_all = min(0.0, float(key.min()), x)
  hi_all = max(1.0, float(key.max()), x)
  best, best_score = None, -1
  most = len(_search_states(x, key)) - 1
  for _ in range(max(1, candidates)):
    if best_score == most:
      break  # every original step is met already
    k = num_to_add(n, rng, max_added)
    positions = np.sort(rng.integers(0, n + 1, size=k))
    left = np.where(positions > 0, key[np.maximum(positions - 1, 0)], lo_all)
    right = np.where(positions < n, key[np.minimum(positions, n - 1)], hi_all)
    values = left + (right - left) * rng.uniform(size=k)
    twin, node_map = insert_nodes(key, np.sort(values), positions)
    # Equal positions get sorted values in order; `np.sort` keeps the twin sorted.
    score = _matched_transitions(x, key, twin, node_map)
    if score > best_score:
      best, best_score = (twin, node_map), score
  twin, node_map = best
  return TwinArgs(args=(x, twin), node_map=node_map)


def append_one_larger(sample: Sample, rng: np.random.Generator, *,
                      max_added: Optional[int] = 1) -> TwinArgs:
  """Appends elements larger than every key (default exactly one)."""
  return append_larger(sample, rng, max_added=max_added)


register(RuleEntry(
    algorithm='minimum', rule=append_any, args_from_inputs=key_args_from_inputs,
    description='appends 1..max(2, n//4) elements of any value (U[0,1)) at the end',
    reason="the scan reads A[0..i] only: the original trajectory is the twin's "
           "prefix (t' = t)"))

register(RuleEntry(
    algorithm='binary_search', rule=sorted_insertions,
    args_from_inputs=search_args_from_inputs,
    description='inserts 1..max(2, n//4) elements into the sorted array, choosing among '
                'random insertions the one whose search path best meets the original',
    reason='the midpoints depend on the array length: an insertion shifts every '
           'range that contains it, so only the steps whose (low, high) range the '
           'twin meets again are valid; reaching the initial range [0, n-1] takes '
           'about n added elements'))

register(RuleEntry(
    algorithm='quickselect', rule=append_one_larger, args_from_inputs=key_args_from_inputs,
    description='appends 1 element larger than every key at the end (max_added tunes it)',
    reason="an added pivot leaves the originals in place and the recursion reaches "
           "the original's quickselect(0, n-1); one element keeps the median index "
           "n//2 for even n (odd n: the twin looks for rank n//2 + 1, and its "
           "recursion may part from the original's late). The graph hints i_rank "
           "and target are divided by the number of nodes, so they never agree with "
           "a larger twin: no step is valid for all hints, only per hint"))
