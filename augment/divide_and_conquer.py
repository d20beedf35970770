"""Augmentation rule for find_maximum_subarray_kadane (dm-clrs
`algorithms/divide_and_conquer.py`).

Kadane's scan at step j reads only A[0..j] and its running state (sum, i,
best_*), so elements appended at the end, of any value, are read only after
the original trajectory has ended: every step is valid at t' = t. An element
inserted anywhere else would be added to the running sum.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from augment.rule import RuleEntry, TwinArgs, num_to_add, register
from augment.sorting import key_args_from_inputs
from nar.sample import Sample


def append_any_signed(sample: Sample, rng: np.random.Generator, *,
                      max_added: Optional[int] = None) -> TwinArgs:
  """Appends elements drawn like the sampler's (U[-1, 1))."""
  key = key_args_from_inputs(sample.inputs)[0]
  k = num_to_add(key.shape[0], rng, max_added)
  lo, hi = min(-1.0, float(key.min())), max(1.0, float(key.max()))
  twin = np.concatenate([key, rng.uniform(lo, hi, size=k)])
  return TwinArgs(args=(twin,), node_map=np.arange(key.shape[0]))


register(RuleEntry(
    algorithm='find_maximum_subarray_kadane', rule=append_any_signed,
    args_from_inputs=key_args_from_inputs,
    description='appends 1..max(2, n//4) elements of any value (U[-1,1)) at the end',
    reason="step j reads only A[0..j]: the original trajectory is the prefix of the "
           "twin's (t' = t)"))
