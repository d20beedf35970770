"""The memory plan of a run: what training and evaluation will take, estimated
from the configuration before anything runs, and checked against the free memory.

A training run holds, per device, its state (parameters, gradients, Adam's
update and two moments: 5 x the parameters, float32) and, at its peak, the
activations of its largest training step (the largest training size, with its
padded trajectory length; Hint-ReLIC: the twins and their representations too)
or of an evaluation batch (`evaluation_bytes_per_sample`, the batch shrinks to
fit). The host holds the generated data (the padding plan's probe of every
training size, the batches in flight, the validation and test splits) and
XLA's own working memory. On a CPU the two are one memory.

The activations are a sum of terms, per sample, in float32 elements (N nodes,
T padded steps, H the width; `_STEP_COEFFICIENTS`): the processor's N^2 H
(one step: the time loop recomputes each step in its backward, `remat='full'`),
its static edge encodings, the decoders' N^2 H (node pointers, edge features)
or N^3 H (edge pointers), and what the time loop keeps per step (latents,
hint logits); with `remat='none'` every step's N^2 H is kept. The coefficients
were fitted to XLA's own buffer plan of the training step
(`compile().memory_analysis()`: 23 configurations, 9 algorithms, widths 32 to
128, sizes 16 to 32, both remat modes, Hint-ReLIC; every one within 0.81 to
1.20 of it) and the whole plan is checked against measured peak memory in
docs/memory.md. Trajectory lengths come from `TRAJECTORIES`, measured (no data
is generated to plan); between and beyond its sizes they follow the growth of
the nearest pair.

`check_training_memory` refuses (ConfigError) a configuration that cannot fit,
in one line with the estimate and the nearest settings that fit.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Optional

from nar.config import ConfigError, TrainConfig
from nar.processors import MAX_PLUS_BLOCK_ELEMENTS, ProcessorConfig

GIB = 2 ** 30

# ------------------------------------------------------------------ evaluation
# Peak memory of evaluating one sample: XLA's buffer plan for the predict
# (`compile().memory_analysis()`, bfs, hidden 64) is 40 N^2 H bytes a sample at
# n = 128, 256 and 512 (42 MB, 168 MB, 671 MB), and peak RSS follows it (0.66 GB a
# sample at n = 512) now that the triplet maximum runs over blocks of nodes
# (`processors.max_plus`: at most MAX_PLUS_BLOCK_ELEMENTS floats at once). 20%
# margin on the pair part.
EVAL_BYTES_PER_PAIR_UNIT = 48
# The share of the free memory an evaluation batch may take (the rest: the split
# itself, the parameters, a training run's own state, other processes).
EVAL_MEMORY_SHARE = 0.5


def evaluation_bytes_per_sample(num_nodes: int, hidden: int) -> int:
  """Estimated peak memory of evaluating one problem of `num_nodes` nodes."""
  triples = min(num_nodes ** 3 * ProcessorConfig.nb_triplet_fts, MAX_PLUS_BLOCK_ELEMENTS)
  return EVAL_BYTES_PER_PAIR_UNIT * num_nodes ** 2 * hidden + 4 * triples


def host_free_bytes() -> Optional[int]:
  """The host's MemAvailable, None where unknown."""
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  return None


def free_memory_bytes(device=None) -> Optional[int]:
  """Free memory of `device` (default the first): the accelerator's own (its
  allocator's limit minus what is in use), the host's MemAvailable for a CPU;
  None where neither is known."""
  import jax
  device = device or jax.devices()[0]
  stats = None
  try:
    stats = device.memory_stats()
  except Exception:      # backends without allocator statistics
    stats = None
  if stats and stats.get('bytes_limit'):
    return int(stats['bytes_limit']) - int(stats.get('bytes_in_use', 0))
  return host_free_bytes()


# ---------------------------------------------------------- trajectory lengths
# (config size, nodes, longest trajectory) of the padding plan's probe
# (`data.probe_samples`: PROBE_SAMPLES training samples, seed PROBE_SEED) at
# sizes 4 to 32 (64 where sampling is quick; string matchers, which train on sizes
# >= 14: 14 to 32), measured with dm-clrs 2.0.3 (`python -m experiments.memory_plan
# --trajectories`); tests/test_memory.py compares the small sizes with the probe itself.
TRAJECTORIES: dict[str, tuple[tuple[int, int, int], ...]] = {
    'activity_selector': ((4, 4, 5), (8, 8, 9), (16, 16, 17), (32, 32, 33), (64, 64, 65)),
    'articulation_points': ((4, 4, 22), (8, 8, 45), (16, 16, 126), (32, 32, 397), (64, 64, 1394)),
    'bellman_ford': ((4, 4, 4), (8, 8, 6), (16, 16, 8), (32, 32, 10), (64, 64, 15)),
    'bfs': ((4, 4, 4), (8, 8, 6), (16, 16, 8), (32, 32, 10), (64, 64, 11)),
    'binary_search': ((4, 4, 3), (8, 8, 4), (16, 16, 5), (32, 32, 6), (64, 64, 7)),
    'bridges': ((4, 4, 22), (8, 8, 45), (16, 16, 126), (32, 32, 397), (64, 64, 1394)),
    'bubble_sort': ((4, 4, 7), (8, 8, 29), (16, 16, 121), (32, 32, 497), (64, 64, 2017)),
    'dag_shortest_paths': ((4, 4, 13), (8, 8, 25), (16, 16, 49), (32, 32, 97), (64, 64, 190)),
    'dfs': ((4, 4, 12), (8, 8, 24), (16, 16, 48), (32, 32, 96), (64, 64, 192)),
    'dijkstra': ((4, 4, 5), (8, 8, 9), (16, 16, 17), (32, 32, 33), (64, 64, 65)),
    'find_maximum_subarray_kadane': ((4, 4, 4), (8, 8, 8), (16, 16, 16),
        (32, 32, 32), (64, 64, 64)),
    'floyd_warshall': ((4, 4, 4), (8, 8, 8), (16, 16, 16), (32, 32, 32), (64, 64, 64)),
    'graham_scan': ((4, 4, 7), (8, 8, 15), (16, 16, 29), (32, 32, 60)),
    'heapsort': ((4, 4, 16), (8, 8, 39), (16, 16, 89), (32, 32, 207)),
    'insertion_sort': ((4, 4, 4), (8, 8, 8), (16, 16, 16), (32, 32, 32)),
    'jarvis_march': ((4, 4, 21), (8, 8, 64), (16, 16, 171), (32, 32, 463)),
    'kmp_matcher': ((14, 17, 21), (16, 20, 24), (24, 30, 38), (32, 40, 54)),
    'lcs_length': ((4, 4, 2), (8, 8, 6), (16, 16, 12), (32, 32, 23)),
    'matrix_chain_order': ((4, 4, 3), (8, 8, 7), (16, 16, 15), (32, 32, 31)),
    'minimum': ((4, 4, 4), (8, 8, 8), (16, 16, 16), (32, 32, 32)),
    'mst_kruskal': ((4, 4, 9), (8, 8, 33), (16, 16, 127), (32, 32, 428)),
    'mst_prim': ((4, 4, 5), (8, 8, 9), (16, 16, 17), (32, 32, 33)),
    'naive_string_matcher': ((14, 17, 19), (16, 20, 24), (24, 30, 38), (32, 40, 54)),
    'optimal_bst': ((4, 5, 5), (8, 9, 9), (16, 17, 17), (32, 33, 33)),
    'quickselect': ((4, 4, 10), (8, 8, 36), (16, 16, 70), (32, 32, 164)),
    'quicksort': ((4, 4, 9), (8, 8, 35), (16, 16, 85), (32, 32, 200)),
    'segments_intersect': ((4, 4, 5), (8, 4, 5), (16, 4, 5), (32, 4, 5)),
    'strongly_connected_components': ((4, 4, 24), (8, 8, 48), (16, 16, 96), (32, 32, 192)),
    'task_scheduling': ((4, 4, 5), (8, 8, 9), (16, 16, 17), (32, 32, 33)),
    'topological_sort': ((4, 4, 12), (8, 8, 24), (16, 16, 46), (32, 32, 84)),
}


def trajectory(algorithm: str, size: int) -> tuple[int, int]:
  """(nodes, longest trajectory) of training samples of `algorithm` at `size`
  (a `train_sizes` entry): the table's, else grown as a power of the size from
  the two table sizes around it (the last two beyond it)."""
  rows = TRAJECTORIES[algorithm]
  for s, n, t in rows:
    if s == size:
      return n, t
  above = [k for k, r in enumerate(rows) if r[0] > size]
  k = min(max(above[0], 1), len(rows) - 1) if above else len(rows) - 1
  lo, hi = rows[k - 1], rows[k]

  def grow(a: int, b: int) -> int:
    power = math.log(b / a) / math.log(hi[0] / lo[0])
    return max(1, math.ceil(a * (size / lo[0]) ** power - 1e-9))
  return grow(lo[1], hi[1]), grow(lo[2], hi[2])


def training_sizes(algorithm: str, config: TrainConfig) -> tuple:
  """The `train_sizes` entries a run samples `algorithm` at (the string
  matchers: one, from the largest; `data.train_sizes`), as TRAJECTORIES keys them."""
  from nar.data import STRING_MATCHERS
  sizes = tuple(sorted(set(config.train_sizes)))
  return sizes[-1:] if algorithm in STRING_MATCHERS else sizes


def _bucket(value: int, minimum: int = 1) -> int:
  """`nar.batching.bucket` (the padding plan's ladder)."""
  value = max(int(value), minimum)
  if value <= 4:
    return value
  p = 2 ** math.floor(math.log2(value))
  for rung in (p, 3 * p // 2, 2 * p):
    if rung >= value:
      return rung
  return 2 * p


def probe_size(algorithm: str, size: int) -> int:
  """The size the padding plan's probe samples `algorithm` at for training size
  `size`: `size` itself, except for the string matchers, whose probe
  (`data.probe_samples`) passes its already lengthened size (x 5/4) to
  `make_train_samples`, which lengthens it again: their batches are padded to
  the longer strings' nodes."""
  from nar.data import STRING_MATCHERS
  return size * 5 // 4 if algorithm in STRING_MATCHERS else size


def padded_shape(algorithm: str, size: int) -> tuple[int, int]:
  """(N, T) of a training batch of `size`: the probe's nodes and its longest
  trajectory, time bucketed as the padding plan does."""
  n, t = trajectory(algorithm, probe_size(algorithm, size))
  return n, _bucket(t, 2)


def twin_size(size: int) -> int:
  """The largest twin of a sample of `size` (the rules append 1 to size/4 elements)."""
  return size + max(1, size // 4)


# -------------------------------------------------------------- features
@dataclasses.dataclass(frozen=True)
class Features:
  """What the memory of an algorithm's step depends on, from its processed spec.

  edge_inputs: whether it has edge-located inputs (static N^2 H encodings).
  quadratic_decoders: hints and outputs decoded through N^2 H (node pointers,
    edge features); edge_pointers: through N^3 H.
  pointer_hints: node pointer hints (Hint-ReLIC's pair representations).
  hint_elements: (c0, c1, c2, c3): a step's hint logits are c0 + c1 N + c2 N^2 + c3 N^3.
  data_elements: (per sample, stored as float64 by dm-clrs) inputs and outputs
    (c0..c2 over 1, N, N^2) and a step's hints (c0..c2).
  """
  edge_inputs: bool
  quadratic_decoders: int
  edge_pointers: int
  pointer_hints: int
  hint_elements: tuple
  static_elements: tuple
  step_elements: tuple


# Categories of a categorical feature: 2 to 5 in CLRS-30 (`nb_dims` comes from data).
_CATEGORIES = 3


@functools.lru_cache(maxsize=None)
def features(algorithm: str) -> Features:
  from nar.sample import processed_spec
  spec = processed_spec(algorithm)
  hint = [0, 0, 0, 0]
  static = [0, 0, 0]
  step = [0, 0, 0]
  edge_inputs = quad = edge_ptr = ptr_hints = 0
  for stage, loc, typ in spec.values():
    power = {'node': 1, 'edge': 2, 'graph': 0}[loc]
    pointer = typ in ('pointer', 'permutation_pointer')
    width = _CATEGORIES if typ == 'categorical' else 1
    if stage == 'input' and loc == 'edge':
      edge_inputs = 1
    if stage != 'input':
      quad += (loc == 'node' and pointer) or (loc == 'edge' and not pointer)
      edge_ptr += loc == 'edge' and pointer
    if stage == 'hint':
      ptr_hints += loc == 'node' and typ == 'pointer'
      hint[power + pointer] += width
      step[power] += width
    else:
      static[power] += width
  return Features(bool(edge_inputs), quad, edge_ptr, ptr_hints, tuple(hint), tuple(static),
                  tuple(step))


def _poly(coefficients, n: int) -> int:
  return sum(c * n ** k for k, c in enumerate(coefficients))


# Float32 elements per sample of the training step's activations, fitted to XLA's
# buffer plan (see the module doc): term -> coefficient.
_STEP_COEFFICIENTS = {
    'processor': 10.13,          # N^2 H
    'edge_inputs': 10.69,        # N^2 H, algorithms with edge inputs
    'quadratic_decoders': 2.43,  # N^2 H each
    'edge_pointers': 1.74,       # N^3 H each
    'latents': 2.08,             # T N H
    'hint_logits': 2.47,         # T x a step's hint logits
    'no_remat': 2.81,            # T N^2 H (2 + quadratic decoders), remat 'none'
    'relic_reps': 1.59,          # T N^2 H per pointer hint, both sides (Hint-ReLIC)
    'relic_critic': 1.32,        # pairs x (N^2 (H + 1.5 C) per pointer hint + N (3H + 1.5 C))
}


def step_elements(algorithm: str, n: int, t: int, hidden: int, remat: str) -> float:
  """Float32 elements of one sample's share of the training step's activations."""
  f = features(algorithm)
  c = _STEP_COEFFICIENTS
  pair = n * n * hidden
  out = (c['processor'] * pair + c['edge_inputs'] * pair * f.edge_inputs
         + c['quadratic_decoders'] * pair * f.quadratic_decoders
         + c['edge_pointers'] * n ** 3 * hidden * f.edge_pointers
         + c['latents'] * t * n * hidden + c['hint_logits'] * t * _poly(f.hint_elements, n))
  if remat == 'none':
    out += c['no_remat'] * t * pair * (2 + f.quadratic_decoders)
  return out


def _reads_relic(config: TrainConfig) -> bool:
  from nar import registry
  from nar.config import HINT_RELIC
  entry = registry.methods().get(config.method)
  return entry is not None and HINT_RELIC in entry.reads


def _relic_settings(config: TrainConfig) -> tuple[bool, bool]:
  """(twins, contrast) of the method: whether batches carry twins, and whether
  the contrast (representations, critics) is computed."""
  from nar import registry
  if not _reads_relic(config):
    return False, False
  overrides = registry.method(config.method).overrides
  contrast = overrides.get('relic_contrast', config.relic_contrast)
  lam = overrides.get('relic_lambda', config.relic_lambda)
  return True, bool(contrast and lam > 0)


def sample_step_bytes(config: TrainConfig, algorithm: str, size: int) -> float:
  """Bytes of one sample's share of a training step at `size`."""
  n, t = padded_shape(algorithm, size)
  h = config.hidden
  elements = step_elements(algorithm, n, t, h, config.remat)
  twins, contrast = _relic_settings(config)
  if twins:
    nt, tt = padded_shape(algorithm, twin_size(size))
    k = config.augmentations
    elements += k * step_elements(algorithm, nt, tt, h, config.remat)
    if contrast:
      f = features(algorithm)
      c = _STEP_COEFFICIENTS
      critic = 1.5 * config.relic_critic_hidden
      elements += c['relic_reps'] * (t * n * n + k * tt * nt * nt) * h * f.pointer_hints
      elements += c['relic_critic'] * k * config.relic_pairs * (
          (n * n + nt * nt) * (h + critic) * f.pointer_hints + (n + nt) * (3 * h + critic))
  return 4.0 * elements


# ---------------------------------------------------------------- parameters
@functools.lru_cache(maxsize=None)
def _parameter_polynomial(algorithms: tuple, processor: str) -> tuple:
  """(a, b, c): the network of `algorithms` has a H^2 + b H + c parameters
  (every layer maps widths among H, 2H, 3H and constants: exactly quadratic).
  Traced at three widths on one tiny sample each (shapes only, nothing runs)."""
  import jax
  import numpy as np
  from nar.batching import pad_samples
  from nar.data import make_train_samples
  from nar.model import NetConfig, make_net, nb_dims_of
  from nar.processors import ProcessorConfig
  from nar.sample import processed_spec
  specs = [processed_spec(a) for a in algorithms]
  from nar.data import STRING_MATCHERS
  batches = [pad_samples(make_train_samples(a, 0, 0, 1, (16,) if a in STRING_MATCHERS else (5,)),
                         sp) for a, sp in zip(algorithms, specs)]
  dims = [nb_dims_of(b.inputs, b.hints, b.outputs) for b in batches]
  counts = []
  for h in (8, 16, 24):
    config = NetConfig(ProcessorConfig(kind=processor, hidden=h))
    if len(algorithms) == 1:
      net, b = make_net(specs[0], dims[0], config), batches[0]
      shapes = jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0), b.inputs, b.hints,
                                                b.lengths, b.node_mask, is_training=True))
    else:
      net = make_net(specs, dims, config)
      shapes = jax.eval_shape(lambda: net.init(
          jax.random.PRNGKey(0), *[[getattr(b, k) for b in batches]
                                   for k in ('inputs', 'hints', 'lengths', 'node_mask')],
          is_training=True, algorithm_index=-1))
    counts.append(sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes)))
  (a, b, c) = np.polyfit([8, 16, 24], counts, 2)
  return float(a), float(b), float(c)


def parameter_count(config: TrainConfig) -> int:
  """Parameters of the run: its network and, Hint-ReLIC, each algorithm's critics
  (`nar.hint_relic.Critics`: MLPs H -> C -> C/2 and 3H -> C -> C/2)."""
  a, b, c = _parameter_polynomial(config.algorithms, config.processor)
  h = config.hidden
  count = a * h * h + b * h + c
  if _relic_settings(config)[1]:
    crit = config.relic_critic_hidden
    count += len(config.algorithms) * (4 * h * crit + crit * crit + 3 * crit)
  return int(round(count))


# ----------------------------------------------------------------- the plan
# Host memory of the process beyond what it holds when the plan is made (JAX and
# dm-clrs imported) and beyond its data and arrays: the rest of its imports, XLA's
# compilation and runtime. Measured on a CPU (docs/memory.md): a run of a tiny
# configuration adds 0.79 GiB; Hint-ReLIC and its ablations (the augmentations,
# the twins' padding plan, a larger program) 0.35 GiB more.
RUNTIME_BYTES = int(0.8 * GIB)
TWINS_RUNTIME_BYTES = int(0.35 * GIB)
# Parameters, gradients, Adam's update and two moments.
STATE_COPIES = 5
# Batches alive at once besides those prefetched: the one being placed and the
# one the step reads.
BATCHES_IN_FLIGHT = 2


@dataclasses.dataclass
class MemoryPlan:
  """Estimated peak memory of a training run, in bytes.

  Attributes:
    state: parameters, gradients and optimizer state (on each device).
    step: the largest training step's activations (on each device), at `step_size`.
    evaluation: the largest evaluation batch's (on each device), after the
      batch is fitted to the free memory.
    data: generated samples and batches (host).
    runtime: XLA's compilation and runtime (host).
    devices: the devices the batch is split over; shared: whether they are the
      host's own memory (CPU).
  """
  state: int
  step: int
  step_size: int
  evaluation: int
  data: int
  runtime: int
  devices: int = 1
  shared: bool = True

  @property
  def device(self) -> int:
    """Peak on each device: the state and the larger of a step and an evaluation."""
    return self.state + max(self.step, self.evaluation)

  @property
  def host(self) -> int:
    return self.data + self.runtime + (self.devices * self.device if self.shared else 0)

  def describe(self) -> str:
    parts = (f'parameters and optimizer {self.state / GIB:.2f} GiB, training step at size '
             f'{self.step_size} {self.step / GIB:.2f} GiB, evaluation {self.evaluation / GIB:.2f} '
             f'GiB, data {self.data / GIB:.2f} GiB')
    return parts + (f' (x {self.devices} devices)' if self.devices > 1 else '')


def _sample_data_bytes(algorithm: str, size: int) -> float:
  """Bytes of one generated sample (dm-clrs's float64 probes, with their raw
  arguments: about its inputs again)."""
  f = features(algorithm)
  n, t = trajectory(algorithm, size)
  return 8.0 * (2 * _poly(f.static_elements, n) + t * _poly(f.step_elements, n))


def data_bytes(config: TrainConfig) -> float:
  """Host memory of a run's data: the probe of each training size (and its twins),
  the batches in flight, the validation and test splits."""
  from nar import data as data_lib
  total = 0.0
  twins, _ = _relic_settings(config)
  for algorithm in config.algorithms:
    sizes = training_sizes(algorithm, config)
    probe = sum(_sample_data_bytes(algorithm, probe_size(algorithm, s)) for s in sizes)
    if twins:
      probe += sum(_sample_data_bytes(algorithm, twin_size(probe_size(algorithm, s)))
                   for s in sizes)
    total += data_lib.PROBE_SAMPLES * probe
    n, t = padded_shape(algorithm, max(config.train_sizes))
    f = features(algorithm)
    batch = 4.0 * config.batch_size * (_poly(f.static_elements, n) + t * _poly(f.step_elements, n))
    total += (config.prefetch + BATCHES_IN_FLIGHT) * batch * (1 + config.augmentations * twins)
    for split, size, count in (('val', config.val_size, config.val_samples),
                               ('test', config.test_size, config.test_samples)):
      size = data_lib.eval_size(algorithm, split, size)
      count = data_lib.eval_num_samples(algorithm, split) if count is None else count
      total += count * _sample_data_bytes(algorithm, size) * 1.5    # the samples, then padded
  return total


def _evaluation_bytes(config: TrainConfig, free: Optional[int], devices: int) -> int:
  """The largest evaluation batch of the run (validation, test), as
  `evaluation_batch_size` will fit it to the free memory."""
  from nar import data as data_lib
  worst = 0
  for algorithm in config.algorithms:
    for split, size in (('val', config.val_size), ('test', config.test_size)):
      size = data_lib.eval_size(algorithm, split, size)
      # String matchers: the haystack and the needle (up to a quarter of it) are nodes.
      n = twin_size(size) if algorithm in data_lib.STRING_MATCHERS else size
      per = evaluation_bytes_per_sample(n, config.hidden)
      batch = math.ceil(config.eval_batch_size / devices)
      if free is not None:
        batch = max(1, min(batch, int(EVAL_MEMORY_SHARE * free // per)))
      worst = max(worst, per * batch)
  return worst


def plan_training(config: TrainConfig, free: Optional[int] = None, devices: int = 1,
                  shared: bool = True) -> MemoryPlan:
  """The memory plan of `config` with the batch split over `devices` (`free`:
  the free memory of one device, which the evaluation batch is fitted to)."""
  params = parameter_count(config)
  per_device = math.ceil(config.batch_size / devices)
  step, step_size = 0.0, max(config.train_sizes)
  for algorithm in config.algorithms:
    for size in training_sizes(algorithm, config):
      bytes_ = per_device * sample_step_bytes(config, algorithm, size)
      if bytes_ > step:
        step, step_size = bytes_, size
  return MemoryPlan(state=STATE_COPIES * 4 * params, step=int(step), step_size=step_size,
                    evaluation=_evaluation_bytes(config, free, devices),
                    data=int(data_bytes(config)),
                    runtime=RUNTIME_BYTES + TWINS_RUNTIME_BYTES * _relic_settings(config)[0],
                    devices=devices,
                    shared=shared)


def _largest(fits: Callable[[int], bool], low: int, high: int) -> Optional[int]:
  """The largest v in [low, high] with fits(v) (monotone), None if not even low."""
  if not fits(low):
    return None
  while low < high:
    mid = (low + high + 1) // 2
    low, high = (mid, high) if fits(mid) else (low, mid - 1)
  return low


def nearest_settings(config: TrainConfig, fits: Callable[[TrainConfig], bool],
                     devices: int = 1) -> list[str]:
  """Settings one step from `config` that fit, each alone: remat 'full' where it
  is 'none', the largest width, batch, training size, test and validation size
  and (Hint-ReLIC) number of twins that fit with everything else as it is.

  Args:
    fits: whether a configuration fits (monotone in each of these settings).
  Returns:
    Each as the command line gives it ('--hidden 2558', 'train_sizes up to 136').
  """
  from nar.config import MIN_SIZE
  out = []
  replace = lambda **kw: dataclasses.replace(config, **kw)     # noqa: E731
  if config.remat == 'none' and fits(replace(remat='full')):
    out.append('--set remat=full')
  h = (_largest(lambda v: fits(replace(hidden=v)), 1, config.hidden - 1)
       if config.hidden > 1 else None)
  if h:
    out.append(f'--hidden {h}')
  b = (_largest(lambda v: fits(replace(batch_size=v * devices)), 1,
                config.batch_size // devices - 1) if config.batch_size > devices else None)
  if b:
    out.append(f'--batch-size {b * devices}')
  largest = max(config.train_sizes)
  if largest > MIN_SIZE:
    s = _largest(lambda v: fits(replace(train_sizes=tuple(sorted({min(x, v) for x in
                                                                   config.train_sizes})))),
                 MIN_SIZE, largest - 1)
    if s:
      out.append(f'train_sizes up to {s}')
  for name, flag in (('test_size', '--test-size'), ('val_size', '--set val_size=')):
    value = getattr(config, name)
    if value is not None and value > MIN_SIZE:
      v = _largest(lambda x, name=name: fits(replace(**{name: x})), MIN_SIZE, value - 1)
      if v:
        out.append(f'{flag} {v}' if flag.startswith('--test') else f'{flag}{v}')
  if _relic_settings(config)[0] and config.augmentations > 1:
    k = _largest(lambda v: fits(replace(augmentations=v)), 1, config.augmentations - 1)
    if k:
      out.append(f'--set augmentations={k}')
  return out


def check_training_memory(config: TrainConfig, *, free: Optional[int],
                          host_free: Optional[int] = None, devices: int = 1,
                          shared: bool = True) -> MemoryPlan:
  """The run's memory plan, or ConfigError when it cannot fit: one line with the
  estimate, the free memory and the nearest settings that fit.

  Args:
    free: free bytes of one device (the host's for a CPU); None: unknown, no check.
    host_free: the host's free bytes where the devices are not the host's memory.
    devices: the devices the batch is split over; shared: devices are host memory.
  """
  plan = plan_training(config, free, devices, shared)
  if free is None:
    return plan

  def fits(candidate: TrainConfig, p: Optional[MemoryPlan] = None) -> bool:
    p = p or plan_training(candidate, free, devices, shared)
    if shared:
      return p.host <= free
    return p.device <= free and (host_free is None or p.data + p.runtime <= host_free)

  if fits(config, plan):
    return plan
  if shared or plan.device > free:
    need, have = plan.host if shared else plan.device, f'{free / GIB:.1f} GiB is free' + (
        '' if shared else ' on each device')
  else:
    need, have = plan.data + plan.runtime, f'{(host_free or 0) / GIB:.1f} GiB is free on the host'
  nearest = nearest_settings(config, fits, devices)
  hint = ('; nearest settings that fit: ' + ', or '.join(nearest) if nearest
          else '; no smaller width, batch or size fits: use a machine with more memory')
  raise ConfigError(f'training {config.algorithm} ({config.method}, hidden {config.hidden}, '
                    f'batch {config.batch_size}, sizes up to {max(config.train_sizes)}) needs '
                    f'about {need / GIB:.1f} GiB ({plan.describe()}) and {have}{hint}')
