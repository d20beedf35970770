"""The contract between the augmentation core and the per-family rule modules.

A *rule* builds the raw dm-clrs arguments of a larger input (the twin) from one
sample. The core (`augment.core`) re-executes dm-clrs's algorithm on those
arguments, assigns `pos` to the new nodes, and finds the valid step pairs by
comparison: a rule never declares validity itself.
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
