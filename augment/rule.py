"""The contract between the augmentation core and the per-family rule modules.

A *rule* builds the raw dm-clrs arguments of a larger input (the twin) from one
sample. The core (`augment.core`) re-executes dm-clrs's algorithm on those
arguments, assigns `pos` to the new nodes, and finds the valid step pairs by
comparison: a rule never declares validity itself.

A rule author needs only this module: `TwinArgs`, `RuleEntry` and `register`
(the contract), and the helpers for rules on arrays (`num_to_add`,
`insert_nodes`, `values_above`, `values_below`, at the end of the file).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

from nar.sample import Sample


@dataclasses.dataclass(frozen=True)
class TwinArgs:
  """A rule's proposal.

  Attributes:
    args: raw arguments for `clrs._src.algorithms.<algorithm>(*args)` on the twin.
    node_map: int array `[n]`; original node i is node `node_map[i]` of the twin.
      Original nodes must keep their relative order (node_map increasing), so
      that `pos` can be assigned to new nodes without reordering the originals.
  """
  args: tuple[Any, ...]
  node_map: np.ndarray


# rule(sample, rng) -> TwinArgs
Rule = Callable[[Sample, np.random.Generator], TwinArgs]
# args_from_inputs(inputs) -> raw args: rebuilds the dm-clrs arguments of a sample
# from its (processed) input arrays, so that batches that carry no args
# (a dm-clrs `Feedback`) can be augmented too.
ArgsFromInputs = Callable[[Mapping[str, np.ndarray]], tuple[Any, ...]]


@dataclasses.dataclass(frozen=True)
class RuleEntry:
  algorithm: str
  rule: Rule | None            # None: no rule gives valid steps (see `reason`)
  args_from_inputs: ArgsFromInputs
  description: str             # one line: where new nodes go, their values/edges
  reason: str = ''             # why there is no rule / what limits coverage


_REGISTRY: dict[str, RuleEntry] = {}


def register(entry: RuleEntry) -> RuleEntry:
  if entry.algorithm in _REGISTRY:
    raise ValueError(f'rule for {entry.algorithm} registered twice')
  _REGISTRY[entry.algorithm] = entry
  return entry


def registry() -> Mapping[str, RuleEntry]:
  return _REGISTRY


# ----------------------------------------------------------------------------
# Helpers for rules on arrays (also importable from augment.core)
# ----------------------------------------------------------------------------


def num_to_add(n: int, rng: np.random.Generator, max_added: int | None = None) -> int:
  """1 .. max_added nodes (default max(2, n // 4)): few, since the network also
  runs on the twin."""
  hi = max(2, n // 4) if max_added is None else int(max_added)
  if hi < 1:
    raise ValueError(f'max_added must be >= 1, got {max_added}')
  return int(rng.integers(1, hi + 1))


def values_above(threshold: float, k: int, rng: np.random.Generator,
                 high: float = 1.0) -> np.ndarray:
  """k values strictly above `threshold`, in (threshold, high) when there is room
  (the samplers draw from [0, 1)), else just above it."""
  threshold = float(threshold)
  if high <= threshold:
    high = threshold + 1.0
  v = threshold + (high - threshold) * rng.uniform(size=k)
  return np.maximum(v, np.nextafter(threshold, np.inf))


def values_below(threshold: float, k: int, rng: np.random.Generator,
                 low: float = 0.0) -> np.ndarray:
  """k values strictly below `threshold`, in (low, threshold) when there is room."""
  threshold = float(threshold)
  if low >= threshold:
    low = threshold - 1.0
  v = low + (threshold - low) * rng.uniform(size=k)
  v = np.where(v <= low, (low + threshold) / 2, v)
  return np.minimum(v, np.nextafter(threshold, -np.inf))


def insert_nodes(original: np.ndarray, added: np.ndarray, positions: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Inserts `added[k]` before original index `positions[k]` (n = append).

  Returns the twin array and the node map of the originals.
  """
  original = np.asarray(original)
  added = np.asarray(added, dtype=original.dtype)
  positions = np.asarray(positions, dtype=np.int64)
  order = np.argsort(positions, kind='stable')
  positions, added = positions[order], added[order]
  n, k = original.shape[0], added.shape[0]
  # Original i is shifted by the number of added nodes inserted at or before i.
  node_map = np.arange(n) + np.searchsorted(positions, np.arange(n), side='right')
  twin = np.empty((n + k,) + original.shape[1:], dtype=original.dtype)
  is_added = np.ones(n + k, dtype=bool)
  is_added[node_map] = False
  twin[node_map] = original
  twin[is_added] = added
  return twin, node_map
