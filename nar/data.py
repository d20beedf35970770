"""Train / validation / test data of the reference protocol (dm-clrs examples/run.py).

* Train: fresh samples, sizes cycling through `train_sizes` (one size per batch,
  as run.py does), edge probability drawn from 0.1..0.9 (halved for some),
  random `pos`; string matchers: length 20 with needle up to 8. Batch k is a pure
  function of (seed, k), so a resumed run sees exactly the batches it would have.
* Validation: n = 16 (string matchers 20), 64 x multiplier samples, random pos.
* Test: the CLRS-30 test split: n = 64, 32 x multiplier samples, sampler seed 3,
  default sampler arguments, default `pos` (as the published dataset).
Validation and test sets are cached on disk (see `nar.cache`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import multiprocessing
import os
import pickle
import signal
import threading
from typing import Iterator, Optional, Sequence

import numpy as np

from nar import cache as cache_lib
from nar.batching import Batch, bucket, pad_samples
from nar.config import ConfigError
from nar.errors import RunError
from nar.sample import (STRING_MATCHERS, Sample, draw_args, processed_spec, protocol_kwargs,
                        sample_from_args, sampler_for)

from clrs._src import specs as clrs_specs

TRAIN_SIZES = (4, 7, 11, 13, 16)
STRING_TRAIN_SIZE = 20   # run.py: max(train sizes) * 5 // 4 for the string matchers
VAL_SEED = 2             # CLRS30['val']['seed']
TEST_SEED = 3            # CLRS30['test']['seed']
TEST_SIZE = 64


def multiplier(algorithm: str) -> int:
  return clrs_specs.CLRS_30_ALGS_SETTINGS[algorithm]['num_samples_multiplier']


def train_sizes(algorithm: str, sizes: Sequence[int] = TRAIN_SIZES) -> tuple[int, ...]:
  if algorithm in STRING_MATCHERS:
    return (max(sizes) * 5 // 4,)
  return tuple(sizes)


def _batch_seed(seed: int, step: int) -> int:
  return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


def task_seed(seed: int, index: int, count: int) -> int:
  """The training-stream seed of algorithm `index` of `count` trained together:
  `seed` itself for a single algorithm (its stream is the single-task run's),
  else one derived from (seed, index), so the algorithms' streams are independent."""
  if count == 1:
    return seed
  return int(np.random.SeedSequence([seed, 0x3A17, index]).generate_state(1)[0] % (2 ** 31 - 1))


def make_train_samples(algorithm: str, seed: int, step: int, batch_size: int,
                       sizes: Sequence[int]) -> list[Sample]:
  """The samples of training batch `step` (deterministic in seed and step)."""
  sizes = train_sizes(algorithm, sizes)
  length = sizes[step % len(sizes)]
  bseed = _batch_seed(seed, step)
  sampler = sampler_for(algorithm, bseed)
  pos_rng = np.random.RandomState(bseed ^ 0x5EED)
  kwargs = protocol_kwargs(algorithm, 'train')
  return [sample_from_args(algorithm, draw_args(sampler, length, kwargs), pos_rng=pos_rng)
          for _ in range(batch_size)]


def size_of_step(algorithm: str, step: int, sizes: Sequence[int] = TRAIN_SIZES) -> int:
  sizes = train_sizes(algorithm, sizes)
  return sizes[step % len(sizes)]


PROBE_SEED = 0x5EED5   # the same for every run: same shapes, compilation cache hits
PROBE_SAMPLES = 128


@dataclasses.dataclass
class PaddingPlan:
  """One padded shape per training size: (nodes, steps), from a probe of
  `PROBE_SAMPLES` samples of each size.

  Why: a jitted step compiles once per input shape (~10-40 s on a CPU). Padding
  each batch to its own longest trajectory gives a dozen shapes per size for
  algorithms whose length varies (bfs, dfs); one shape per size costs a little
  padded compute instead (padding changes no prediction or loss).

  The probe sees 128 samples of a size; a run sees thousands, whose longest
  trajectories go past the probe's (bfs at n = 13: probe 5 steps, batches up to
  9). So the planned steps never shrink from one size to the next larger one,
  and a batch longer than its size's shape takes the smallest planned shape
  that holds it (a larger size's: its nodes padded too), compiling nothing new.
  With `headroom`, the largest size gets one more rung of steps (`bucket`'s
  ladder) where its probe's longest trajectory fills its rung exactly (bfs at
  n = 16: 8 steps, and 17% of the batches of a run need more), so that the
  longest batches of every size have a planned shape. Only a batch no planned
  shape holds gets its own (bucketed) shape, and a program of its own."""
  shapes: dict

  @classmethod
  def probe(cls, samples_of_size: dict, headroom: bool = False) -> 'PaddingPlan':
    """The plan of `{size: samples}`. headroom: one more rung of steps on the
    largest size when trajectory lengths vary and the longest fills its rung
    (for where padded steps cost little: `time_padding_is_cheap`)."""
    shapes, steps = {}, 2
    for size in sorted(samples_of_size):
      ss = samples_of_size[size]
      steps = max(steps, bucket(max(x.length for x in ss), 2))
      shapes[size] = (max(x.num_nodes for x in ss), steps)
    if headroom and shapes:
      largest = max(shapes)
      lengths = {x.length for x in samples_of_size[largest]}
      n, t = shapes[largest]
      if len(lengths) > 1 and max(lengths) == t:
        shapes[largest] = (n, bucket(t + 1))
    return cls(shapes)

  def shape_for(self, num_nodes: int, num_steps: int, size: Optional[int]):
    """(nodes, steps) of a batch whose largest sample has `num_nodes` nodes and
    `num_steps` steps: its size's planned shape if it holds the batch, else the
    smallest planned shape that does (fewest padded node pairs, then steps),
    else (None, None): its own."""
    planned = self.shapes.get(size)
    if planned is not None and planned[0] >= num_nodes and planned[1] >= num_steps:
      return planned
    holding = [s for s in self.shapes.values() if s[0] >= num_nodes and s[1] >= num_steps]
    return min(holding, key=lambda s: (s[0], s[1])) if holding else (None, None)

  def pad(self, samples: Sequence[Sample], spec, size: Optional[int]) -> Batch:
    n, t = self.shape_for(max(x.num_nodes for x in samples), max(x.length for x in samples),
                          size)
    return pad_samples(samples, spec, num_nodes=n, num_steps=t)


def time_padding_is_cheap() -> bool:
  """Whether time steps padded past a batch's longest trajectory cost little: on
  a CPU, where the network runs groups of similar length, each skipping the
  steps past its longest sample (`length_groups`, automatic there when lengths
  vary). On an accelerator every padded step is computed."""
  import jax
  return jax.default_backend() == 'cpu'


def probe_samples(algorithm: str, sizes: Sequence[int] = TRAIN_SIZES) -> dict:
  """{size: PROBE_SAMPLES training-distribution samples}, the same for every run."""
  sizes = train_sizes(algorithm, sizes)
  return {size: make_train_samples(algorithm, PROBE_SEED, k, PROBE_SAMPLES, sizes)
          for k, size in enumerate(sizes)}


@dataclasses.dataclass
class TrainStream:
  """Training batches; `batch(step)` is deterministic."""
  algorithm: str
  seed: int
  batch_size: int
  sizes: Sequence[int] = TRAIN_SIZES

  def __post_init__(self):
    self.spec = processed_spec(self.algorithm)
    self.probe = probe_samples(self.algorithm, self.sizes)
    self.plan = PaddingPlan.probe(self.probe, headroom=time_padding_is_cheap())

  def batch(self, step: int):
    samples = make_train_samples(self.algorithm, self.seed, step, self.batch_size, self.sizes)
    return self.plan.pad(samples, self.spec, size_of_step(self.algorithm, step, self.sizes))


class Prefetcher:
  """Produces `fn(step)` for step = start, start+1, ... in background threads,
  ahead of the consumer, in order. Sampling is Python (dm-clrs's algorithms), so
  it runs beside the jitted step instead of before it."""

  def __init__(self, fn, start: int, depth: int = 4, workers: int = 1):
    self._fn = fn
    self._next = start
    self._results: dict[int, object] = {}
    self._cv = threading.Condition()
    self._stop = False
    self._depth = depth
    self._claim = start
    self._error: Optional[BaseException] = None
    self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]
    for t in self._threads:
      t.start()

  def _work(self):
    while True:
      with self._cv:
        while not self._stop and self._claim - self._next >= self._depth:
          self._cv.wait()
        if self._stop:
          return
        step = self._claim
        self._claim += 1
      try:
        item = self._fn(step)
      except BaseException as e:  # pylint: disable=broad-except
        with self._cv:
          self._error = e
          self._cv.notify_all()
        return
      with self._cv:
        self._results[step] = item
        self._cv.notify_all()

  def __iter__(self) -> Iterator:
    return self

  def __next__(self):
    with self._cv:
      while self._next not in self._results:
        if self._error is not None:
          raise self._error
        self._cv.wait()
      item = self._results.pop(self._next)
      self._next += 1
      self._cv.notify_all()
    return item

  def close(self):
    with self._cv:
      self._stop = True
      self._cv.notify_all()


# The sampling function of this process when it is a `ProcessPrefetcher` worker.
_WORKER_FN = None


def _start_sampling_worker(payload: bytes) -> None:
  # Unpickled here, after the environment is set: the function's modules import
  # JAX, which must not take the accelerator the training process uses.
  global _WORKER_FN
  os.environ['JAX_PLATFORMS'] = 'cpu'
  os.environ['CUDA_VISIBLE_DEVICES'] = ''
  # Ctrl-C or a SIGTERM to the process group: the training process handles it
  # (saves a checkpoint, closes the pool); a worker killed first would turn that
  # clean stop into a broken pool. A worker whose parent died exits on its own
  # (its task queue closes).
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, signal.SIG_IGN)
  _WORKER_FN = pickle.loads(payload)


def _sample_in_worker(step: int):
  return _WORKER_FN(step)


class ProcessPrefetcher:
  """`Prefetcher` with `fn(step)` computed in `processes` separate Python
  processes (spawned, CPU only), so that sampling is not bound by one core and
  the GIL: a Hint-ReLIC batch costs ~0.1 s of Python, 3,000 steps 5 minutes,
  more than an accelerator needs for the steps themselves.

  Args:
    fn: a picklable callable `step -> item` (a pure function of step: workers
      compute steps in any order, items come back in order).
    start: the first step.
    depth: steps in flight (at least `processes`).
    processes: worker processes.
  """

  def __init__(self, fn, start: int, depth: int = 4, processes: int = 1):
    try:
      payload = pickle.dumps(fn)
    except Exception as e:  # pylint: disable=broad-except
      raise ConfigError(f'sampling in processes needs a picklable batch function ({e}); '
                        'sample in threads instead (sampling_processes=0)') from e
    self._pool = concurrent.futures.ProcessPoolExecutor(
        processes, mp_context=multiprocessing.get_context('spawn'),
        initializer=_start_sampling_worker, initargs=(payload,))
    self._pending: collections.deque = collections.deque()
    self._claim = start
    for _ in range(max(depth, processes)):
      self._submit()

  def _submit(self):
    self._pending.append(self._pool.submit(_sample_in_worker, self._claim))
    self._claim += 1

  def __iter__(self) -> Iterator:
    return self

  def __next__(self):
    try:
      item = self._pending.popleft().result()
    except concurrent.futures.process.BrokenProcessPool as e:
      raise RunError('a sampling process died (out of memory or killed?); run the same '
                     'command again to resume from the last checkpoint, or sample in '
                     'threads (sampling_processes=0)') from e
    self._submit()
    return item

  def close(self):
    self._pool.shutdown(wait=False, cancel_futures=True)


def prefetcher(fn, start: int, depth: int, processes: int = 0):
  """Batches of `fn(step)` from step `start` on, prepared ahead: in a thread of
  this process (`processes` = 0) or in that many worker processes."""
  if processes > 0:
    return ProcessPrefetcher(fn, start, depth=depth, processes=processes)
  return Prefetcher(fn, start, depth=depth)


def eval_size(algorithm: str, split: str, size: Optional[int] = None) -> int:
  if size is not None:
    return size
  if split == 'test':
    return TEST_SIZE
  return STRING_TRAIN_SIZE if algorithm in STRING_MATCHERS else max(TRAIN_SIZES)


def eval_num_samples(algorithm: str, split: str) -> int:
  return (32 if split == 'test' else 64) * multiplier(algorithm)


def generate_split(algorithm: str, split: str, size: int, seed: int,
                   num_samples: int, progress: bool = False) -> list[Sample]:
  """Samples of a validation/test set, drawn in sequence from one sampler, as
  dm-clrs's dataset builder does (so seed 3, n = 64 is the CLRS-30 test split)."""
  sampler = sampler_for(algorithm, seed)
  kwargs = protocol_kwargs(algorithm, split)
  pos_rng = np.random.RandomState(seed + 1) if split == 'val' else None
  it = range(num_samples)
  if progress:
    from tqdm import tqdm
    it = tqdm(it, desc=f'generating {algorithm} {split} n={size}', unit='sample', leave=False)
  return [sample_from_args(algorithm, draw_args(sampler, size, kwargs), pos_rng=pos_rng)
          for _ in it]


def load_split(algorithm: str, split: str, *, size: Optional[int] = None,
               seed: Optional[int] = None, num_samples: Optional[int] = None,
               cache_dir: Optional[str] = None, progress: bool = False) -> Batch:
  """The whole validation/test set as one `Batch` (time padded to its longest
  trajectory), from the cache when a valid entry exists."""
  size = eval_size(algorithm, split, size)
  seed = (TEST_SEED if split == 'test' else VAL_SEED) if seed is None else seed
  num_samples = eval_num_samples(algorithm, split) if num_samples is None else num_samples
  key = cache_lib.SplitKey(algorithm, split, size, seed, num_samples)
  if cache_dir is not None:
    cached = cache_lib.load(cache_dir, key)
    if cached is not None:
      return cached
  samples = generate_split(algorithm, split, size, seed, num_samples, progress)
  batch = pad_samples(samples, processed_spec(algorithm), time_bucketing=False)
  if cache_dir is not None:
    cache_lib.save(cache_dir, key, batch)
  return batch


def iterate_chunks(batch: Batch, chunk: int) -> Iterator[Batch]:
  """Slices a split into batches of `chunk` samples, all of one shape: the last
  slice is padded with copies of its last sample (callers drop them), and every
  slice keeps the split's time axis (its longest trajectory). One predict
  program per split: padding each slice to its own longest trajectory compiled
  one per length (~10 s each on a CPU) to save steps that the length groups
  skip anyway (`nar.model`) and that cost little beside a training run."""
  total = batch.batch_size
  for start in range(0, total, chunk):
    idx = np.arange(start, min(start + chunk, total))
    real = len(idx)
    if real < chunk:   # keep one shape for the jitted predict: repeat the last sample
      idx = np.concatenate([idx, np.full(chunk - real, idx[-1])])
    lengths = batch.lengths[idx]
    sub = Batch(inputs={k: v[idx] for k, v in batch.inputs.items()},
                hints={k: v[:, idx] for k, v in batch.hints.items()},
                outputs={k: v[idx] for k, v in batch.outputs.items()},
                lengths=lengths, node_mask=batch.node_mask[idx])
    yield sub, real
