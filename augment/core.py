"""The augmentation core: re-execution, comparison, alignment, `pos` of new nodes.

A rule (see `augment.rule`) proposes the raw arguments of a larger input, the
*twin*. This module runs dm-clrs on them, gives the new nodes `pos` values, and
decides which steps of the original have an equivalent step in the twin:

  * `state_agreement` compares the hints of one original state with one twin
    state, restricted to the original nodes (docs/method.md, section 2);
  * a pair (t, t') is valid for hint h when h agrees at both ends of the
    transitions t -> t+1 and t' -> t'+1 (`transition_agreement`);
  * `align_pairs` picks at most one twin transition per original transition.

Nothing here trusts the rule: every pair kept is checked on the re-executed
twin trajectory.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from augment import rule as rule_lib
# The helpers a rule author needs live beside the contract; re-exported here for older imports.
from augment.rule import insert_nodes, num_to_add, values_above, values_below  # noqa: F401
from nar import sample as sample_lib
from nar.sample import Sample
from clrs._src import specs as clrs_specs

_NODE = clrs_specs.Location.NODE
_EDGE = clrs_specs.Location.EDGE
_GRAPH = clrs_specs.Location.GRAPH
_POINTER_TYPES = frozenset({clrs_specs.Type.POINTER,
                            clrs_specs.Type.PERMUTATION_POINTER})

# Hints are re-computed by the same Python code on the twin, so equal steps give
# bit-equal values in practice; the tolerance only absorbs float re-association
# (e.g. a sum over the same terms in another order), never a different value.
FLOAT_RTOL = 1e-7
FLOAT_ATOL = 1e-9

ALIGN_MODES = ('state', 'prefix')


class UnsupportedAlgorithmError(ValueError):
  """No augmentation rule for this algorithm (unknown name or `rule=None`)."""


class MalformedSampleError(ValueError):
  """A sample (or Feedback batch) that does not match its algorithm's spec."""


# ----------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class AugmentedSample:
  """An original sample, its re-executed twin and the valid step pairs.

  Attributes:
    original: the sample that was augmented.
    twin: the twin, from `sample_from_args(alg, twin_args, pos=twin_pos)`.
    node_map: int `[n]`, original node i is twin node `node_map[i]`.
    pairs: int `[P, 2]` of (t, t'): original transition t -> t+1 aligned with
      twin transition t' -> t'+1; at most one t' per t, sorted by t (and t').
    hint_valid: hint name -> bool `[P]`, the pair is valid for that hint.
    align: the alignment mode that produced `pairs`.
  """
  original: Sample
  twin: Sample
  node_map: np.ndarray
  pairs: np.ndarray
  hint_valid: dict[str, np.ndarray]
  align: str = 'state'

  @property
  def fully_valid(self) -> np.ndarray:
    """bool `[P]`: the pair is valid for every hint."""
    if not self.hint_valid:
      return np.zeros(len(self.pairs), dtype=bool)
    return np.logical_and.reduce(list(self.hint_valid.values()))

  @property
  def num_added(self) -> int:
    return self.twin.num_nodes - self.original.num_nodes

  @property
  def num_transitions(self) -> int:
    return max(self.original.length - 1, 0)

  def coverage(self, hint: str | None = None) -> float:
    """Share of the original's transitions with a valid pair (all hints, or
    one hint). NaN for a trajectory without transitions."""
    if self.num_transitions == 0:
      return float('nan')
    valid = self.fully_valid if hint is None else self.hint_valid[hint]
    return float(np.count_nonzero(valid)) / self.num_transitions


# ----------------------------------------------------------------------------
# Comparison
# ----------------------------------------------------------------------------


def hint_names(algorithm: str) -> list[str]:
  """Hint names of the processed spec, in spec order."""
  return [k for k, v in sample_lib.processed_spec(algorithm).items()
          if v[0] == clrs_specs.Stage.HINT]


def _inverse_map(node_map: np.ndarray, num_twin_nodes: int) -> np.ndarray:
  inv = np.full(num_twin_nodes, -1, dtype=np.int64)
  inv[node_map] = np.arange(len(node_map))
  return inv


def _restrict_twin(values: np.ndarray, location: str, type_: str,
                   node_map: np.ndarray, inverse: np.ndarray) -> np.ndarray:
  """Twin hint values `[T', ...]` seen from the original nodes.

  Pointer targets are mapped back to original indices; a target that is an
  added node becomes -1, which no original pointer equals (a disagreement).
  """
  if location == _NODE:
    values = values[:, node_map]
  elif location == _EDGE:
    values = values[:, node_map][:, :, node_map]
  if type_ in _POINTER_TYPES:
    values = inverse[np.rint(values).astype(np.int64)]
  return values


def _canonical_original(values: np.ndarray, type_: str) -> np.ndarray:
  if type_ in _POINTER_TYPES:
    return np.rint(values).astype(np.int64)
  return values


def _is_float_scalar(type_: str, values: np.ndarray) -> bool:
  return type_ == clrs_specs.Type.SCALAR and np.issubdtype(values.dtype, np.floating)


def _restricted_pair(original: Sample, twin: Sample, node_map: np.ndarray, name: str
                     ) -> tuple[np.ndarray, np.ndarray, bool]:
  """(original values [T, d], restricted twin values [T', d], compare_exactly)."""
  _, loc, typ = sample_lib.processed_spec(original.algorithm)[name]
  inverse = _inverse_map(node_map, twin.num_nodes)
  orig = _canonical_original(np.asarray(original.hints[name]), typ)
  tw = _restrict_twin(np.asarray(twin.hints[name]), loc, typ, node_map, inverse)
  exact = not (_is_float_scalar(typ, orig) or _is_float_scalar(typ, tw))
  return (orig.reshape(orig.shape[0], -1), tw.reshape(tw.shape[0], -1), exact)


def _rows_agree(a: np.ndarray, b: np.ndarray, exact: bool) -> bool:
  if a.shape != b.shape:
    return False
  if exact:
    return bool(np.array_equal(a, b))
  return bool(np.allclose(a, b, rtol=FLOAT_RTOL, atol=FLOAT_ATOL))


def state_agreement(original: Sample, twin: Sample, node_map: np.ndarray,
                    t: int, t_twin: int) -> dict[str, bool]:
  """Per hint: does original state t equal twin state t_twin on the original
  nodes? Node hints restricted to the original nodes, edge hints to original x
  original, graph hints compared whole; pointers through the node map."""
  node_map = np.asarray(node_map)
  out = {}
  for name in hint_names(original.algorithm):
    orig, tw, exact = _restricted_pair(original, twin, node_map, name)
    out[name] = _rows_agree(orig[t], tw[t_twin], exact)
  return out


def transition_agreement(original: Sample, twin: Sample, node_map: np.ndarray,
                         t: int, t_twin: int) -> dict[str, bool]:
  """Per hint: does the original transition t -> t+1 equal the twin transition
  t_twin -> t_twin+1 (agreement at both ends)?"""
  start = state_agreement(original, twin, node_map, t, t_twin)
  end = state_agreement(original, twin, node_map, t + 1, t_twin + 1)
  return {k: start[k] and end[k] for k in start}


def _row_ids(orig: np.ndarray, tw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Integer ids such that rows are equal iff their ids are equal."""
  both = np.concatenate([orig.astype(np.float64), tw.astype(np.float64)], axis=0)
  both = np.ascontiguousarray(both + 0.0)  # -0.0 -> 0.0, so bytes equal iff values equal
  # One opaque element per row: np.unique then compares whole rows bytewise.
  rows = both.view(np.dtype((np.void, both.dtype.itemsize * max(both.shape[1], 1))))
  if both.shape[1] == 0:
    return np.zeros(orig.shape[0], np.int64), np.zeros(tw.shape[0], np.int64)
  _, ids = np.unique(rows.ravel(), return_inverse=True)
  ids = ids.ravel()
  return ids[:orig.shape[0]], ids[orig.shape[0]:]


def _close_matrix(orig: np.ndarray, tw: np.ndarray) -> np.ndarray:
  out = np.empty((orig.shape[0], tw.shape[0]), dtype=bool)
  width = max(orig.shape[1], 1)
  chunk = max(1, 2_000_000 // max(tw.shape[0] * width, 1))  # bound the memory
  for lo in range(0, orig.shape[0], chunk):
    close = np.isclose(orig[lo:lo + chunk, None, :], tw[None, :, :],
                       rtol=FLOAT_RTOL, atol=FLOAT_ATOL)
    out[lo:lo + chunk] = close.all(axis=-1)
  return out


def state_agreement_matrix(original: Sample, twin: Sample, node_map: np.ndarray
                           ) -> dict[str, np.ndarray]:
  """Per hint, bool `[T, T']`: `state_agreement` for every (t, t') at once."""
  node_map = np.asarray(node_map)
  out = {}
  for name in hint_names(original.algorithm):
    orig, tw, exact = _restricted_pair(original, twin, node_map, name)
    if orig.shape[1] != tw.shape[1]:
      out[name] = np.zeros((orig.shape[0], tw.shape[0]), dtype=bool)
    elif exact:
      ids_o, ids_t = _row_ids(orig, tw)
      out[name] = ids_o[:, None] == ids_t[None, :]
    else:
      out[name] = _close_matrix(orig, tw)
  return out


def transition_agreement_matrix(states: Mapping[str, np.ndarray]
                                ) -> dict[str, np.ndarray]:
  """Per hint, bool `[T-1, T'-1]` from the state matrices."""
  return {k: s[:-1, :-1] & s[1:, 1:] for k, s in states.items()}


# ----------------------------------------------------------------------------
# Alignment
# ----------------------------------------------------------------------------


def _monotone_alignment(score: np.ndarray) -> np.ndarray:
  """Chooses at most one t' per t, t' strictly increasing with t, maximising the
  total score; returns `[P, 2]` pairs with positive score.

  Dynamic programming as in sequence alignment; D[i, j] is the best total for
  the first i original and first j twin transitions. Rows are vectorised:
  D[i, j] = max_{k <= j} max(D[i-1, k], D[i-1, k-1] + score[i-1, k-1]).
  """
  n_o, n_t = score.shape
  if n_o == 0 or n_t == 0:
    return np.zeros((0, 2), dtype=np.int64)
  table = np.zeros((n_o + 1, n_t + 1), dtype=np.int64)
  for i in range(1, n_o + 1):
    prev = table[i - 1]
    cand = np.maximum(prev[1:], prev[:-1] + score[i - 1])
    table[i, 1:] = np.maximum.accumulate(cand)
  pairs = []
  i, j = n_o, n_t
  # Walking back, moving j left first puts each match at the earliest twin step
  # that achieves the optimum (the twin's extra work is then after the match).
  while i > 0 and j > 0:
    if table[i, j] == table[i, j - 1]:
      j -= 1
    elif table[i, j] == table[i - 1, j]:
      i -= 1
    else:
      pairs.append((i - 1, j - 1))
      i -= 1
      j -= 1
  pairs.reverse()
  return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


# [ours] A pair valid for fewer than half of the hints is, in practice, a
# coincidence of low-information hints (heapsort's 3-way `phase` agrees on a
# third of all step pairs) rather than the same step of the algorithm.
MIN_VALID_FRACTION = 0.5


def align_pairs(transitions: Mapping[str, np.ndarray], align: str = 'state',
                min_valid_fraction: float = MIN_VALID_FRACTION
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """Chooses the twin transition of each original transition.

  Args:
    transitions: per hint, bool `[T-1, T'-1]` transition validity.
    align: 'prefix' pairs t with t' = t over the common prefix; 'state' searches
      the whole twin trajectory under a monotone constraint: chosen t' strictly
      increase with t. The twin performs the original's steps in the same order
      (a rule only adds work before, between or after them), so a crossing pair
      could only be a coincidence; strictness gives each twin transition at
      most one original partner. Among monotone alignments the one with the
      most pairs valid for all hints wins, then the most (pair, hint) validities.
    min_valid_fraction: a pair is a candidate only if it is valid for at least
      this share of the hints (and always for at least one). 0 keeps every pair
      valid for one hint.

  Returns:
    pairs `[P, 2]` and per-hint validity `[P]`.
  """
  if align not in ALIGN_MODES:
    raise ValueError(f"align must be one of {ALIGN_MODES}, got '{align}'")
  names = list(transitions)
  if not names:
    return np.zeros((0, 2), dtype=np.int64), {}
  stack = np.stack([transitions[k] for k in names])  # [H, T-1, T'-1]
  count = stack.sum(axis=0, dtype=np.int64)
  needed = max(1, int(np.ceil(min_valid_fraction * len(names) - 1e-9)))
  count = np.where(count >= needed, count, 0)
  if align == 'prefix':
    m = min(count.shape)
    ts = np.arange(m)
    keep = count[ts, ts] > 0
    pairs = np.stack([ts[keep], ts[keep]], axis=1).astype(np.int64).reshape(-1, 2)
  else:
    num_hints = len(names)
    # Lexicographic score: a fully valid pair outweighs any number of partial
    # validities (the total of partial counts is below `big`).
    big = num_hints * count.shape[0] + 1
    score = count + big * (count == num_hints)
    pairs = _monotone_alignment(score)
  hint_valid = {k: stack[h, pairs[:, 0], pairs[:, 1]].astype(bool)
                for h, k in enumerate(names)}
  return pairs, hint_valid


# ----------------------------------------------------------------------------
# pos of the new nodes
# ----------------------------------------------------------------------------


def check_node_map(node_map: Any, num_nodes: int, num_twin_nodes: int) -> np.ndarray:
  node_map = np.asarray(node_map)
  if node_map.shape != (num_nodes,) or not np.issubdtype(node_map.dtype, np.integer):
    raise ValueError(f'node_map must be an int array of shape ({num_nodes},), '
                     f'got {node_map.dtype} {node_map.shape}')
  if num_nodes and (node_map[0] < 0 or node_map[-1] >= num_twin_nodes):
    raise ValueError(f'node_map {node_map} out of range for a twin of '
                     f'{num_twin_nodes} nodes')
  if np.any(np.diff(node_map) <= 0):
    # Originals keep their relative order, else their `pos` would have to change.
    raise ValueError(f'node_map must be strictly increasing, got {node_map}')
  return node_map.astype(np.int64)


def assign_pos(original_pos: np.ndarray, node_map: np.ndarray,
               twin_default_pos: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """`pos` of the twin: originals keep theirs, new nodes get sorted uniform
  values between their neighbours, within each `pos` segment (segments start
  where dm-clrs's default `pos` is 0: e.g. needle | haystack)."""
  n_twin = twin_default_pos.shape[0]
  pos = np.zeros(n_twin, dtype=np.float64)
  pos[node_map] = original_pos
  is_orig = np.zeros(n_twin, dtype=bool)
  is_orig[node_map] = True
  starts = np.flatnonzero(twin_default_pos == 0)
  if starts.size == 0 or starts[0] != 0:
    starts = np.concatenate([[0], starts])
  bounds = np.concatenate([starts, [n_twin]])
  for a, b in zip(bounds[:-1], bounds[1:]):
    anchors = np.arange(a, b)[is_orig[a:b]]
    if np.any(np.diff(pos[anchors]) < 0):
      raise ValueError('original nodes are out of `pos` order inside a segment of '
                       'the twin (the rule moved a node across a segment)')
    # Each run of new nodes lies between two anchors (or a segment end).
    lows = np.concatenate([[0.0], pos[anchors]])
    highs = np.concatenate([pos[anchors], [1.0]])
    edges = np.concatenate([[a - 1], anchors, [b]])
    for k in range(len(edges) - 1):
      lo_i, hi_i = edges[k] + 1, edges[k + 1]
      if hi_i > lo_i:
        lo, hi = lows[k], max(highs[k], lows[k])
        pos[lo_i:hi_i] = lo + (hi - lo) * np.sort(rng.uniform(size=hi_i - lo_i))
  return pos


# ----------------------------------------------------------------------------
# Sample checks
# ----------------------------------------------------------------------------


def _check_array(where: str, name: str, arr: np.ndarray, location: str,
                 lead: tuple[int, ...], n: int) -> None:
  k = len(lead)
  if location == _NODE:
    ok = arr.ndim >= k + 1 and arr.shape[k] == n
  elif location == _EDGE:
    ok = arr.ndim >= k + 2 and arr.shape[k:k + 2] == (n, n)
  else:
    ok = arr.ndim >= k
  if not ok or tuple(arr.shape[:k]) != lead:
    raise MalformedSampleError(
        f"{where} '{name}' has shape {arr.shape}, expected leading dims {lead} "
        f'then the {location} dims for {n} nodes')


def check_sample(sample: Any, algorithm: str) -> None:
  """Raises `MalformedSampleError` unless `sample` is a processed sample of
  `algorithm` (names, stages and shapes of the processed spec)."""
  for attr in ('algorithm', 'inputs', 'hints', 'outputs'):
    if not hasattr(sample, attr):
      raise MalformedSampleError(f'expected a nar.sample.Sample, got {type(sample).__name__}')
  if sample.algorithm != algorithm:
    raise MalformedSampleError(
        f"sample is of algorithm '{sample.algorithm}', augmenter is for '{algorithm}'")
  spec = sample_lib.processed_spec(algorithm)
  groups = {clrs_specs.Stage.INPUT: ('input', sample.inputs),
            clrs_specs.Stage.HINT: ('hint', sample.hints),
            clrs_specs.Stage.OUTPUT: ('output', sample.outputs)}
  for name, (stage, _, _) in spec.items():
    where, d = groups[stage]
    if name not in d:
      extra = ''
      if name == 'pred' and 'pred_h' in sample.hints:
        extra = ' (pred_h must be moved to the input pred: clrs.process_pred_as_input)'
      raise MalformedSampleError(
          f"{algorithm} sample lacks {where} '{name}'{extra}; expected the processed "
          f'spec {sorted(spec)}')
  if 'pos' not in sample.inputs or np.ndim(sample.inputs['pos']) != 1:
    raise MalformedSampleError("input 'pos' must be a vector [N]")
  n = int(np.shape(sample.inputs['pos'])[0])
  lengths = {np.shape(sample.hints[k])[0] if np.ndim(sample.hints[k]) else -1
             for k in spec if spec[k][0] == clrs_specs.Stage.HINT}
  if len(lengths) != 1 or min(lengths) < 1:
    raise MalformedSampleError(f'hints must share one time length >= 1, got {lengths}')
  length = lengths.pop()
  for name, (stage, loc, typ) in spec.items():
    where, d = groups[stage]
    arr = np.asarray(d[name])
    _check_array(where, name, arr, loc, (length,) if stage == clrs_specs.Stage.HINT else (), n)
    if typ in _POINTER_TYPES and loc != _GRAPH and arr.size:
      if np.any(arr < 0) or np.any(arr >= n):
        raise MalformedSampleError(f"{where} '{name}' has pointers outside [0, {n})")


# ----------------------------------------------------------------------------
# Augmenter
# ----------------------------------------------------------------------------


class Augmenter:
  """Augments samples of one algorithm with its registered rule."""

  def __init__(self, entry: rule_lib.RuleEntry):
    if entry.rule is None:
      raise UnsupportedAlgorithmError(f'{entry.algorithm} has no rule: {entry.reason}')
    self.entry = entry
    self.algorithm = entry.algorithm

  def __repr__(self) -> str:
    return f'Augmenter({self.algorithm!r})'

  def __call__(self, sample: Sample, rng: np.random.Generator | int | None = None, *,
               align: str = 'state', min_valid_fraction: float = MIN_VALID_FRACTION,
               **rule_kwargs) -> AugmentedSample:
    check_sample(sample, self.algorithm)
    if align not in ALIGN_MODES:
      raise ValueError(f"align must be one of {ALIGN_MODES}, got '{align}'")
    if not getattr(sample, 'args', None):
      sample = dataclasses.replace(sample, args=tuple(self.entry.args_from_inputs(sample.inputs)))
    rng = np.random.default_rng(rng)
    proposal = self.entry.rule(sample, rng, **rule_kwargs)
    # Run once with dm-clrs's default pos (which marks the segments), then set
    # the twin's pos: the same as sample_from_args(..., pos=twin_pos), since
    # pos never influences the algorithm.
    pristine = copy.deepcopy(tuple(proposal.args))
    twin = sample_lib.sample_from_args(self.algorithm, proposal.args)
    # dm-clrs sorts (and partitions) its array argument in place, so the args
    # the twin was run on are restored from a copy taken before the run.
    twin.args = pristine
    node_map = check_node_map(proposal.node_map, sample.num_nodes, twin.num_nodes)
    twin.inputs['pos'] = assign_pos(np.asarray(sample.inputs['pos'], dtype=np.float64),
                                    node_map, twin.inputs['pos'], rng)
    states = state_agreement_matrix(sample, twin, node_map)
    pairs, hint_valid = align_pairs(transition_agreement_matrix(states), align,
                                    min_valid_fraction)
    return AugmentedSample(original=sample, twin=twin, node_map=node_map, pairs=pairs,
                           hint_valid=hint_valid, align=align)

  def augment_many(self, samples: Iterable[Sample], rng: np.random.Generator | int | None = None,
                   num_augmentations: int = 1, **kwargs) -> list[AugmentedSample]:
    """`num_augmentations` twins per sample, sample-major order."""
    rng = np.random.default_rng(rng)
    return [self(s, rng, **kwargs) for s in samples for _ in range(num_augmentations)]

  def samples_from_feedback(self, feedback: Any) -> list[Sample]:
    return samples_from_feedback(feedback, self.algorithm)

  def from_feedback(self, feedback: Any, rng: np.random.Generator | int | None = None,
                    **kwargs) -> list[AugmentedSample]:
    """Augments every sample of a processed dm-clrs `Feedback` batch."""
    rng = np.random.default_rng(rng)
    return [self(s, rng, **kwargs) for s in self.samples_from_feedback(feedback)]


def samples_from_feedback(feedback: Any, algorithm: str) -> list[Sample]:
  """Splits a dm-clrs `Feedback` (processed: pred as input, permutations, pos)
  into samples, rebuilding the raw args with the rule's `args_from_inputs` and
  checking by re-execution that they reproduce the batch's hints and outputs."""
  entry = rule_lib.registry().get(algorithm)
  if entry is None:
    raise UnsupportedAlgorithmError(f"nothing registered for '{algorithm}'")
  try:
    features = feedback.features
    inputs, hints, lengths = features.inputs, features.hints, features.lengths
    outputs = feedback.outputs
  except AttributeError as e:
    raise MalformedSampleError(f'expected a dm-clrs Feedback, got {type(feedback).__name__}') from e
  lengths = np.asarray(lengths)
  out = []
  for b in range(lengths.shape[0]):
    length = int(lengths[b])
    if length < 1 or any(np.shape(dp.data)[0] < length for dp in hints):
      raise MalformedSampleError(f'sample {b}: length {length} does not fit the hints')
    given = Sample(
        algorithm=algorithm, args=(),
        inputs={dp.name: np.asarray(dp.data)[b] for dp in inputs},
        hints={dp.name: np.asarray(dp.data)[:length, b] for dp in hints},
        outputs={dp.name: np.asarray(dp.data)[b] for dp in outputs})
    check_sample(given, algorithm)
    try:
      args = tuple(entry.args_from_inputs(given.inputs))
      rebuilt = sample_lib.sample_from_args(algorithm, copy.deepcopy(args),
                                            pos=given.inputs['pos'])
      rebuilt.args = args  # the run may have sorted its copy in place
    except Exception as e:  # pylint: disable=broad-except
      raise MalformedSampleError(f'sample {b}: could not re-execute {algorithm} from its '
                                 f'inputs: {e!r}') from e
    for group, ref, got in (('hint', rebuilt.hints, given.hints),
                            ('output', rebuilt.outputs, given.outputs)):
      for name, value in got.items():
        mine = ref.get(name)
        if mine is None or mine.shape != value.shape or not np.allclose(
            mine, value, rtol=FLOAT_RTOL, atol=1e-6):
          raise MalformedSampleError(
              f"sample {b}: re-executing {algorithm} on the inputs does not reproduce "
              f"{group} '{name}' (is the batch processed as the protocol does?)")
    out.append(rebuilt)
  return out


# ----------------------------------------------------------------------------
# Registry access
# ----------------------------------------------------------------------------


def all_entries() -> Mapping[str, rule_lib.RuleEntry]:
  """Everything registered, with or without a rule."""
  return dict(rule_lib.registry())


def supported() -> list[str]:
  """Algorithms with a rule, sorted."""
  return sorted(k for k, e in rule_lib.registry().items() if e.rule is not None)


_AUGMENTERS: dict[str, Augmenter] = {}


def get(algorithm: str) -> Augmenter:
  """The augmenter of `algorithm`; `UnsupportedAlgorithmError` (a ValueError)
  names the supported algorithms if it has none."""
  if algorithm in _AUGMENTERS:
    return _AUGMENTERS[algorithm]
  entry = rule_lib.registry().get(algorithm)
  if entry is None or entry.rule is None:
    if entry is not None:
      why = f'no rule gives valid steps: {entry.reason}'
    elif algorithm in sample_lib.CLRS30_ALGORITHMS:
      why = 'no rule registered'
    else:
      why = 'not a CLRS-30 algorithm'
    raise UnsupportedAlgorithmError(
        f"cannot augment '{algorithm}' ({why}); supported: {', '.join(supported()) or 'none'}")
  _AUGMENTERS[algorithm] = Augmenter(entry)
  return _AUGMENTERS[algorithm]


def augment_many(samples: Sequence[Sample], rng: np.random.Generator | int | None = None,
                 num_augmentations: int = 1, **kwargs) -> list[AugmentedSample]:
  """Augments samples of any (supported) algorithms, sample-major order."""
  rng = np.random.default_rng(rng)
  return [get(s.algorithm)(s, rng, **kwargs) for s in samples for _ in range(num_augmentations)]
