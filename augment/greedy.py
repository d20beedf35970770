"""Augmentation rules for the greedy family (dm-clrs `algorithms/greedy.py`).

Both algorithms visit the elements in a sorted order of one input (activities
by finish time, tasks by decreasing weight), not in array order. An element
that comes last in that order is visited after every original, so the
original trajectory is the prefix of the twin's wherever the element sits in
the array: new elements are inserted at random array positions (the network
must then ignore them by value, not by position).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from augment.rule import (RuleEntry, TwinArgs, insert_nodes, num_to_add, register, values_above,
                          values_below)
from nar.sample import Sample


def activity_args_from_inputs(inputs: Mapping[str, np.ndarray]) -> tuple[Any, ...]:
  return (np.array(inputs['s'], dtype=np.float64), np.array(inputs['f'], dtype=np.float64))


def task_args_from_inputs(inputs: Mapping[str, np.ndarray]) -> tuple[Any, ...]:
  # Deadlines are integers; a batch may carry them as floats.
  return (np.rint(np.asarray(inputs['d'])).astype(np.int64),
          np.array(inputs['w'], dtype=np.float64))


def late_activities(sample: Sample, rng: np.random.Generator, *,
                    max_added: Optional[int] = None) -> TwinArgs:
  """Inserts activities finishing after every original one, any start time."""
  s, f = activity_args_from_inputs(sample.inputs)
  n = s.shape[0]
  k = num_to_add(n, rng, max_added)
  f_new = values_above(f.max(), k, rng)
  s_new = rng.uniform(0.0, 1.0, size=k) * f_new  # start before finish, like the sampler
  positions = rng.integers(1, n + 1, size=k)  # node 0 is the initial pointer target
  twin_s, node_map = insert_nodes(s, s_new, positions)
  twin_f, _ = insert_nodes(f, f_new, positions)
  return TwinArgs(args=(twin_s, twin_f), node_map=node_map)


def light_tasks(sample: Sample, rng: np.random.Generator, *,
                max_added: Optional[int] = None) -> TwinArgs:
  """Inserts tasks lighter than every original one, with any deadline."""
  d, w = task_args_from_inputs(sample.inputs)
  n = d.shape[0]
  k = num_to_add(n, rng, max_added)
  w_new = values_below(w.min(), k, rng)
  d_new = rng.integers(1, n + k + 1, size=k)  # the sampler's range for n + k tasks
  positions = rng.integers(1, n + 1, size=k)  # node 0 is the initial pointer target
  twin_d, node_map = insert_nodes(d, d_new, positions)
  twin_w, _ = insert_nodes(w, w_new, positions)
  return TwinArgs(args=(twin_d, twin_w), node_map=node_map)


register(RuleEntry(
    algorithm='activity_selector', rule=late_activities,
    args_from_inputs=activity_args_from_inputs,
    description='inserts 1..max(2, n//4) activities finishing after all others at random '
                'positions',
    reason="activities are visited by finish time: the added ones come after the "
           "original trajectory, which is the twin's prefix (t' = t)"))

register(RuleEntry(
    algorithm='task_scheduling', rule=light_tasks, args_from_inputs=task_args_from_inputs,
    description='inserts 1..max(2, n//4) tasks lighter than all others (any deadline) at '
                'random positions',
    reason="tasks are visited by decreasing weight: the added ones come after the "
           "original trajectory, which is the twin's prefix (t' = t)"))
