"""One CLRS trajectory, unbatched, as the protocol of dm-clrs `examples/run.py` prepares it.

A `Sample` keeps the raw arguments the dm-clrs algorithm was called with, so that
anything built from it (an augmented twin, a re-check) can re-execute the algorithm.

Processing applied, in dm-clrs's own order (`examples/run.py`):
  1. `pred_h` moved to the input `pred` for the algorithms where it is static;
  2. `SHOULD_BE_PERMUTATION` probes turned into a permutation pointer + `_mask`;
  3. `pos` randomised (sorted uniform values within each `pos` segment) when asked.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from nar import clrs_import  # noqa: F401  (quiet TensorFlow before dm-clrs loads it)
from nar.catalogue import CLRS30_ALGORITHMS, FAMILIES  # noqa: F401  (re-exported)
from clrs._src import algorithms as clrs_algorithms
from clrs._src import probing
from clrs._src import samplers as clrs_samplers
from clrs._src import specs as clrs_specs

# dm-clrs examples/run.py: algorithms whose `pred_h` hint never changes.
PRED_AS_INPUT_ALGORITHMS: frozenset[str] = frozenset({
    'binary_search', 'minimum', 'find_maximum_subarray',
    'find_maximum_subarray_kadane', 'matrix_chain_order', 'lcs_length',
    'optimal_bst', 'activity_selector', 'task_scheduling',
    'naive_string_matcher', 'kmp_matcher', 'jarvis_march',
})

STRING_MATCHERS: frozenset[str] = frozenset({'naive_string_matcher', 'kmp_matcher'})
# Lower edge probability for these, else trajectories get very long (run.py).
HALF_P_ALGORITHMS: frozenset[str] = frozenset(
    {'articulation_points', 'bridges', 'mst_kruskal', 'bipartite_matching'})


class UnknownAlgorithmError(ValueError):
  """An algorithm name that is not one of CLRS-30."""


def check_algorithm(name: str) -> str:
  if name not in CLRS30_ALGORITHMS:
    raise UnknownAlgorithmError(
        f"unknown algorithm '{name}'; choose one of: {', '.join(CLRS30_ALGORITHMS)}")
  return name


def family_of(algorithm: str) -> str:
  for family, members in FAMILIES.items():
    if algorithm in members:
      return family
  raise UnknownAlgorithmError(f"unknown algorithm '{algorithm}'")


Spec = dict[str, tuple[str, str, str]]  # name -> (stage, location, type)


def processed_spec(algorithm: str, enforce_permutations: bool = True,
                   pred_as_input: bool = True) -> Spec:
  """The spec after the protocol's processing (pred as input, permutations)."""
  spec = dict(clrs_specs.SPECS[algorithm])
  if pred_as_input and algorithm in PRED_AS_INPUT_ALGORITHMS:
    spec = {('pred' if k == 'pred_h' else k):
            ((clrs_specs.Stage.INPUT, v[1], v[2]) if k == 'pred_h' else v)
            for k, v in spec.items()}
  out: Spec = {}
  for k, (stage, loc, typ) in spec.items():
    if loc == clrs_specs.Location.NODE and typ == clrs_specs.Type.SHOULD_BE_PERMUTATION:
      if enforce_permutations:
        out[k] = (stage, loc, clrs_specs.Type.PERMUTATION_POINTER)
        out[k + '_mask'] = (stage, loc, clrs_specs.Type.MASK_ONE)
      else:
        out[k] = (stage, loc, clrs_specs.Type.POINTER)
    else:
      out[k] = (stage, loc, typ)
  return out


@dataclasses.dataclass
class Sample:
  """One trajectory. Arrays are unbatched: inputs/outputs `[N, ...]` (or `[]`
  for graph-level), hints `[T, N, ...]` with T = `length` (the true length)."""
  algorithm: str
  args: tuple[Any, ...]
  inputs: dict[str, np.ndarray]
  hints: dict[str, np.ndarray]
  outputs: dict[str, np.ndarray]

  @property
  def length(self) -> int:
    return int(next(iter(self.hints.values())).shape[0])

  @property
  def num_nodes(self) -> int:
    return int(self.inputs['pos'].shape[0])


def _unbatch(dps: Sequence[probing.DataPoint], axis: int) -> dict[str, np.ndarray]:
  return {dp.name: np.take(np.asarray(dp.data), 0, axis=axis) for dp in dps}


def sample_from_args(algorithm: str, args: Sequence[Any], *,
                     pos: Optional[np.ndarray] = None,
                     pos_rng: Optional[np.random.RandomState] = None,
                     enforce_permutations: bool = True,
                     pred_as_input: bool = True) -> Sample:
  """Runs the dm-clrs algorithm on `args` and applies the protocol processing.

  Args:
    pos: explicit `pos` input `[N]` (used by augmentations to keep the original
      nodes' positions); takes precedence over `pos_rng`.
    pos_rng: if given, `pos` is randomised exactly as `clrs.process_random_pos`.
  """
  fn = getattr(clrs_algorithms, algorithm)
  args = tuple(args)
  # dm-clrs sorts/partitions array arguments in place: keep ours intact.
  _, probes = fn(*copy.deepcopy(args))
  inp, outp, hint = probing.split_stages(probes, clrs_specs.SPECS[algorithm])
  if pred_as_input and algorithm in PRED_AS_INPUT_ALGORITHMS:
    pred_h = [h for h in hint if h.name == 'pred_h']
    if pred_h:
      hint = [h for h in hint if h.name != 'pred_h']
      inp = list(inp) + [probing.DataPoint(
          name='pred', location=pred_h[0].location, type_=pred_h[0].type_,
          data=pred_h[0].data[0])]
  inp = _preprocess_permutations(inp, enforce_permutations)
  hint = _preprocess_permutations(hint, enforce_permutations)
  outp = _preprocess_permutations(outp, enforce_permutations)
  sample = Sample(algorithm=algorithm, args=args, inputs=_unbatch(inp, 0),
                  hints=_unbatch(hint, 1), outputs=_unbatch(outp, 0))
  if pos is not None:
    sample.inputs['pos'] = np.asarray(pos, dtype=sample.inputs['pos'].dtype)
  elif pos_rng is not None:
    sample.inputs['pos'] = randomise_pos(sample.inputs['pos'], pos_rng)
  return sample


def cyclic_predecessor_and_first(pointers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """NumPy twin of dm-clrs `probing.predecessor_to_cyclic_predecessor_and_first`
  for one sample (`pointers` `[1, N]`): dm-clrs's runs through JAX and recompiles
  for every new size, which dominated the cost of re-executing augmented twins."""
  n = pointers.shape[-1]
  one_hot = np.eye(n, dtype=np.float32)[np.asarray(pointers, np.int64)]   # [1, N, N]
  last = one_hot.sum(-2).argmin()
  first = np.diagonal(one_hot, axis1=-2, axis2=-1).argmax()
  mask = np.eye(n, dtype=np.float32)[first]
  one_hot += mask[..., None] * np.eye(n, dtype=np.float32)[last]
  one_hot -= mask[..., None] * mask
  return one_hot, mask[None]


def _preprocess_permutations(probes, enforce_permutations: bool):
  """dm-clrs `samplers._preprocess_permutations` for one sample, in NumPy."""
  out = []
  for x in probes:
    if x.type_ != clrs_specs.Type.SHOULD_BE_PERMUTATION:
      out.append(x)
      continue
    if enforce_permutations:
      perm, mask = cyclic_predecessor_and_first(x.data)
      out.append(probing.DataPoint(name=x.name, location=x.location,
                                   type_=clrs_specs.Type.PERMUTATION_POINTER, data=perm))
      out.append(probing.DataPoint(name=x.name + '_mask', location=x.location,
                                   type_=clrs_specs.Type.MASK_ONE, data=mask))
    else:
      out.append(probing.DataPoint(name=x.name, location=x.location,
                                   type_=clrs_specs.Type.POINTER, data=x.data))
  return out


def randomise_pos(pos: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
  """`clrs.process_random_pos` for one sample: sorted uniforms per segment
  (segments start where the default `pos` is 0, e.g. haystack | needle)."""
  n = pos.shape[0]
  unsorted = rng.uniform(size=(n,))
  split = np.concatenate([np.where(pos == 0)[0], [n]])
  return np.concatenate([np.sort(unsorted[split[j]:split[j + 1]])
                         for j in range(len(split) - 1)])


def sampler_for(algorithm: str, seed: int) -> clrs_samplers.Sampler:
  """A dm-clrs sampler object used only for its `_sample_data` (no pre-sampling)."""
  cls = clrs_samplers.SAMPLERS[algorithm]
  spec = clrs_specs.SPECS[algorithm]
  return cls(getattr(clrs_algorithms, algorithm), spec, num_samples=-1, seed=seed,
             track_max_steps=False)


def protocol_kwargs(algorithm: str, split: str) -> dict[str, Any]:
  """Sampler keyword arguments of the reference protocol (run.py)."""
  if split == 'test':
    return {}  # the CLRS-30 test split uses the samplers' defaults
  p = tuple(0.1 + 0.1 * i for i in range(9))
  if algorithm in HALF_P_ALGORITHMS:
    p = tuple(x / 2 for x in p)
  return {'p': p, 'length_needle': -8}


def draw_args(sampler: clrs_samplers.Sampler, length: int,
              kwargs: Mapping[str, Any]) -> list[Any]:
  """Draws one set of algorithm arguments, ignoring kwargs the sampler lacks."""
  import inspect
  accepted = inspect.signature(sampler._sample_data).parameters  # pylint: disable=protected-access
  clean = {k: v for k, v in kwargs.items() if k in accepted}
  data = sampler._sample_data(length, **clean)  # pylint: disable=protected-access
  return sampler._trunc_array(data)  # pylint: disable=protected-access
