"""Training and evaluation, top to bottom.

    config -> data streams -> network + Optax -> jitted step -> loop
           (validation every K steps, best checkpoint, resumable)
           -> OOD test of the best parameters -> results.json

Several algorithms (`config.algorithms`, multi-task): one network with a shared
processor; step k trains algorithm k mod A (its own stream, padding plan and
jitted step); the best checkpoint is the step with the highest sum of the
per-algorithm validation scores (as dm-clrs's run.py); each is tested at the end.

Data parallelism: the global batch is split along its batch axis over every
local device (`jax.sharding`), parameters are replicated and XLA reduces the
gradients; with one device this is the plain single-device path.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
from typing import Callable, Optional, Sequence

import haiku as hk
import jax
import numpy as np
import optax

from nar import checkpoint as ckpt
from nar import distributed
from nar import provenance
from nar.compilation import CompileLog, Precompiler, ProgramStore
from nar import data as data_lib
from nar import storage
from nar import tracking
from nar.batching import Batch
from nar.config import (MIN_SIZE, ConfigError, TrainConfig, compile_cache_dir,
                        config_conflicts, load_config, load_config_file)
from nar.errors import RunError, RunInUseError, Stopped
from nar.evaluation import ScoreAccumulator, hard_outputs
from nar.evaluations import record_evaluations, record_invariance
# The memory plan; the evaluation's part is used here, and named here too.
from nar.memory import (EVAL_BYTES_PER_PAIR_UNIT, EVAL_MEMORY_SHARE,  # noqa: F401
                        check_training_memory, evaluation_bytes_per_sample, free_memory_bytes,
                        host_free_bytes)
from nar.progress import TrainingBar
from nar.methods import check_runnable, task_configs
from nar.preflight import check_sizes
from nar.model import bind_algorithm, make_net, nb_dims_of, net_config_of
from nar.sample import processed_spec


def warn(msg: str) -> None:
  """A warning or a progress line: on stderr, so that stdout carries only results
  (the scores, the JSON of `nar evaluate`) and pipes work."""
  print(msg, file=sys.stderr, flush=True)




def versions() -> dict:
  import clrs
  return {'python': platform.python_version(), 'jax': jax.__version__,
          'jaxlib': jax.lib.__version__ if hasattr(jax.lib, '__version__') else None,
          'dm-haiku': hk.__version__, 'optax': optax.__version__, 'numpy': np.__version__,
          'dm-clrs': clrs.__version__, 'backend': jax.default_backend(),
          'devices': [str(d) for d in jax.devices()],
          'device_kind': jax.devices()[0].device_kind, 'code': provenance.code_version()}


# ------------------------------------------------------------------ devices
@dataclasses.dataclass
class Placement:
  """Where arrays live: batch axis split over a 1-D mesh of all devices."""
  mesh: jax.sharding.Mesh

  @classmethod
  def create(cls, global_batch: int, devices=None) -> 'Placement':
    devices = list(jax.devices() if devices is None else devices)
    if global_batch % len(devices):
      raise ConfigError(f'batch size {global_batch} does not divide over {len(devices)} '
                        f'devices; use a multiple of {len(devices)}')
    return cls(jax.sharding.Mesh(np.array(devices), ('data',)))

  @property
  def replicated(self):
    return jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())

  def _batch_axis(self, axis: int):
    spec = [None] * (axis + 1)
    spec[axis] = 'data'
    return jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(*spec))

  @staticmethod
  def _put(x, sharding):
    # Each process supplies the rows of its own devices (every host holds the
    # same global batch), so the same call works on one host and on several.
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  def shard(self, tree, axis: int = 0):
    """Splits every array of `tree` along `axis` over the devices."""
    sharding = self._batch_axis(axis)
    return jax.tree_util.tree_map(lambda x: self._put(x, sharding), tree)

  def batch(self, batch: Batch) -> Batch:
    """Puts a batch on the devices (hints are time-major: batch axis 1)."""
    return Batch(inputs=self.shard(batch.inputs), hints=self.shard(batch.hints, 1),
                 outputs=self.shard(batch.outputs), lengths=self.shard(batch.lengths),
                 node_mask=self.shard(batch.node_mask))

  def replicate(self, tree):
    return jax.tree_util.tree_map(lambda x: self._put(x, self.replicated), tree)


def enable_compilation_cache(cache_dir: str) -> None:
  """JAX's persistent compilation cache under `cache_dir`/xla: a sweep compiles
  each (algorithm, shape) once per machine instead of once per run (on CPU a
  shape costs ~10 s, a large part of a short run); NAR_COMPILE_CACHE moves it or
  turns it off (`nar.config.compile_cache_dir`)."""
  directory = compile_cache_dir(cache_dir)
  if directory is None:
    return
  jax.config.update('jax_compilation_cache_dir', directory)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)


# -------------------------------------------------------------------- model
def build_network(config: TrainConfig, spec, example) -> hk.Transformed:
  """The network of `spec` (one algorithm's) built from `example` (a `Batch`);
  multi-task: a list of specs and a list of batches, one per algorithm."""
  examples = [example] if isinstance(spec, dict) else list(example)
  lengths_vary = any(np.unique(np.asarray(e.lengths)).size > 1 for e in examples)
  net_config = net_config_of(config, lengths_vary)
  if isinstance(spec, dict):
    return make_net(spec, nb_dims_of(example.inputs, example.hints, example.outputs), net_config)
  return make_net(list(spec), [nb_dims_of(e.inputs, e.hints, e.outputs) for e in example],
                  net_config)


def init_network(net: hk.Transformed, key, examples: Sequence[Batch]) -> dict:
  """Parameters of every algorithm of a multi-task network (dm-clrs's
  `algorithm_index=-1` initialisation: one pass per algorithm, shared processor)."""
  return net.init(key, [e.inputs for e in examples], [e.hints for e in examples],
                  [e.lengths for e in examples], [e.node_mask for e in examples],
                  is_training=True, algorithm_index=-1)


_ALGO_MODULE = re.compile(r'(?:^|/)algo_(\d+)_')


def other_algorithms_modules(params: dict, algorithm_index: int) -> set:
  """Modules (top-level parameter keys) of the encoders/decoders of algorithms
  other than `algorithm_index` (dm-clrs's names `algo_{i}_...`)."""
  out = set()
  for name in params:
    m = _ALGO_MODULE.search(name)
    if m and int(m.group(1)) != algorithm_index:
      out.add(name)
  return out


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
  parts = []
  if config.grad_clip > 0:
    parts.append(optax.clip_by_global_norm(config.grad_clip))
  parts.append(optax.adam(config.learning_rate))
  return optax.chain(*parts)


def make_update(loss_fn: Callable, optimizer: optax.GradientTransformation,
                placement: Optional[Placement] = None, algorithm_index: Optional[int] = None):
  """(params, opt_state, rng, *data) -> (params, opt_state, loss, terms, grad_norm);
  with a placement, every output is replicated (readable on every host).

  algorithm_index (multi-task): the step trains that algorithm; the encoders and
  decoders of the others are left as they are, parameters and their optimizer
  state (Adam's moments) alike, as dm-clrs's `filter_null_grads` does: their
  gradient is zero, and Adam would otherwise move them on its momentum. Global
  optimizer state (Adam's step count) advances every step, also as in dm-clrs."""
  def update(params, opt_state, rng, *data):
    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rng, *data)
    frozen = (set() if algorithm_index is None
              else other_algorithms_modules(params, algorithm_index))
    if not frozen:
      updates, opt_state = optimizer.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
      return params, opt_state, loss, terms, optax.tree.norm(grads)
    names = set(params)
    active = lambda tree: {k: v for k, v in tree.items() if k not in frozen}  # noqa: E731
    sub_state = _map_param_trees(opt_state, names, active)
    updates, sub_state = optimizer.update(active(grads), sub_state, active(params))
    new_params = {**params, **optax.apply_updates(active(params), updates)}
    opt_state = _merge_param_trees(opt_state, sub_state, names)
    return new_params, opt_state, loss, terms, optax.tree.norm(active(grads))
  out = {} if placement is None else {'out_shardings': placement.replicated}
  return jax.jit(update, donate_argnums=(0, 1), **out)


def make_part_gradient_norms(loss_fn: Callable, parts: Sequence[str],
                             placement: Optional[Placement] = None):
  """How much each weighted part of a loss (`nar.methods.PART_PREFIX` terms)
  pulls on the parameters: `(params, rng, *data) -> {part: global gradient norm}`.

  One forward pass and one backward pass per part; the training step is left
  alone (it differentiates the sum once), so this runs only at the
  `grad_terms_every` cadence.

  Args:
    loss_fn: a method's loss, `(params, rng, *data) -> (loss, terms)`.
    parts: the part names (`Method.loss_parts`), each a term `PART_PREFIX + name`.
  """
  from nar.methods import PART_PREFIX

  def norms(params, rng, *data):
    def values(p):
      terms = loss_fn(p, rng, *data)[1]
      return {name: terms[PART_PREFIX + name] for name in parts}
    primal, pullback = jax.vjp(values, params)
    out = {}
    for name in parts:
      cotangent = {k: jax.numpy.zeros_like(v) for k, v in primal.items()}
      cotangent[name] = jax.numpy.ones_like(primal[name])
      out[name] = optax.tree.norm(pullback(cotangent)[0])
    return out
  kw = {} if placement is None else {'out_shardings': placement.replicated}
  return jax.jit(norms, **kw)


def gradient_shares(norms: dict) -> dict:
  """The metrics.jsonl record of `make_part_gradient_norms`'s output: each part's
  gradient norm and its share of their sum (shares add up to 1)."""
  values = {k: float(v) for k, v in norms.items()}
  total = sum(values.values())
  record = {f'grad_norm_{k}': v for k, v in values.items()}
  record.update({f'grad_share_{k}': (v / total if total > 0 else 0.0) for k, v in values.items()})
  return record


def _shape_key(task: int, placed) -> tuple:
  """What a jitted step compiles anew for: the task and its arguments' shapes."""
  return (task,) + tuple((np.shape(x), str(getattr(x, 'dtype', type(x).__name__)))
                         for x in jax.tree_util.tree_leaves(placed))


def _is_param_tree(names: set):
  return lambda x: isinstance(x, dict) and set(x) == names


def _map_param_trees(state, names: set, fn):
  """`fn` applied to every parameter-shaped tree (per-parameter state such as
  Adam's moments) of an optimizer state; other leaves (step counts) as they are."""
  is_tree = _is_param_tree(names)
  return jax.tree_util.tree_map(lambda x: fn(x) if is_tree(x) else x, state, is_leaf=is_tree)


def _merge_param_trees(state, sub_state, names: set):
  """`state` with the entries of `sub_state` (a `_map_param_trees` restriction of it,
  updated) put back; global leaves come from `sub_state`."""
  is_tree = _is_param_tree(names)
  return jax.tree_util.tree_map(lambda old, new: {**old, **new} if is_tree(old) else new,
                                state, sub_state, is_leaf=is_tree)


def make_predict(net: hk.Transformed, spec: dict, placement: Optional[Placement] = None):
  def predict(params, batch: Batch):
    out = net.apply(params, None, batch.inputs, batch.hints, batch.lengths, batch.node_mask,
                    is_training=False)
    return hard_outputs(spec, out.outputs, batch.node_mask)
  out = {} if placement is None else {'out_shardings': placement.replicated}
  return jax.jit(predict, **out)


def evaluation_batch_size(requested: int, num_nodes: int, hidden: int, devices: int = 1,
                          free_bytes: Optional[int] = None) -> int:
  """The evaluation batch: `requested`, or fewer samples where that many
  problems of `num_nodes` nodes would not fit in the free memory (a multiple
  of `devices`, each holding its share).

  Raises:
    RunError: not even one sample per device fits, naming what it needs.
  """
  if free_bytes is None:
    return requested
  per_sample = evaluation_bytes_per_sample(num_nodes, hidden)
  fit = int(EVAL_MEMORY_SHARE * free_bytes * devices // per_sample)
  if fit < devices:
    raise RunError(
        f'evaluating problems of {num_nodes} nodes at hidden {hidden} needs about '
        f'{per_sample / 2**30:.1f} GiB a sample and {free_bytes / 2**30:.1f} GiB is free '
        f'per device ({EVAL_MEMORY_SHARE:.0%} of it may be used); evaluate at a smaller size or '
        'on a machine with more memory')
  fit -= fit % devices
  return min(requested, fit)


def _fitted_batch_size(split: Batch, batch_size: int, placement: Optional[Placement],
                       hidden: Optional[int]) -> int:
  if hidden is None:
    return batch_size
  devices = placement.mesh.size if placement else 1
  return evaluation_batch_size(batch_size, split.node_mask.shape[1], hidden, devices,
                               free_memory_bytes())


def evaluation_shapes(split: Batch, batch_size: int, placement: Optional[Placement] = None,
                      hidden: Optional[int] = None) -> list[Batch]:
  """One batch of each shape `evaluate_split` (same arguments) cuts `split` into,
  placed as it places them: the arguments its predict program is compiled for."""
  batch_size = _fitted_batch_size(split, batch_size, placement, hidden)
  out, seen = [], set()
  for chunk, _ in data_lib.iterate_chunks(split, batch_size):
    shape = tuple(np.shape(x) for x in jax.tree_util.tree_leaves(chunk))
    if shape not in seen:
      seen.add(shape)
      out.append(placement.batch(chunk) if placement else chunk)
  return out


def evaluate_split(predict, params, split: Batch, spec: dict, batch_size: int,
                   placement: Optional[Placement] = None, progress: Optional[str] = None,
                   hidden: Optional[int] = None) -> dict:
  """`clrs.evaluate`-equal scores of `params` on a whole split, `batch_size`
  samples at a time (fewer where that many would not fit in memory, given the
  network's `hidden` width)."""
  batch_size = _fitted_batch_size(split, batch_size, placement, hidden)
  acc = ScoreAccumulator(spec)
  bar = None
  if progress:
    from tqdm import tqdm
    bar = tqdm(total=split.batch_size, desc=progress, unit='sample', leave=False,
               file=sys.stderr, mininterval=0.5 if sys.stderr.isatty() else 30.0)
  for chunk, real in data_lib.iterate_chunks(split, batch_size):
    placed = placement.batch(chunk) if placement else chunk
    preds = jax.device_get(predict(params, placed))
    keep = slice(0, real)
    acc.add({k: v[keep] for k, v in chunk.outputs.items()},
            {k: np.asarray(v)[keep] for k, v in preds.items()}, chunk.node_mask[keep])
    if bar is not None:
      bar.update(real)
  if bar is not None:
    bar.close()
  return acc.result()


# ---------------------------------------------------------------- run files
class RunDir:
  """The files of a run. Every write goes through `nar.storage`: a crash or a full
  disk at any byte leaves each file's old content or its new one (metrics.jsonl:
  whole records, a torn last line at worst, which resume drops with a warning)."""

  def __init__(self, path: str):
    self.path = path
    self.checkpoints = os.path.join(path, 'checkpoints')
    self.best = os.path.join(self.checkpoints, 'best')
    self.config = os.path.join(path, 'config.json')
    self.metrics = os.path.join(path, 'metrics.jsonl')
    self.metrics_before_restart = os.path.join(path, 'metrics-before-restart.jsonl')
    self.results = os.path.join(path, 'results.json')
    self.log = os.path.join(path, 'train.log')
    self.tracker = tracking.Tracker()     # curves besides metrics.jsonl (`log` setting)

  def step_checkpoint(self, step: int) -> str:
    return os.path.join(self.checkpoints, f'step-{step:08d}')

  def lock(self) -> None:
    """Refuses a second process on the same run (two sweeps, a repeated command):
    an exclusive lock on <run>/.lock, held until this process exits."""
    import fcntl
    path = os.path.join(self.path, '.lock')
    try:
      self._lock_file = open(path, 'a')
    except OSError as e:
      raise storage.storage_error(path, e, 'open') from e
    try:
      fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      self.unlock()
      raise RunInUseError(f'{self.path} is in use by another process (a run is going on there); '
                          'wait for it or stop it first') from None

  def unlock(self) -> None:
    if getattr(self, '_lock_file', None) is not None:
      self._lock_file.close()
      self._lock_file = None

  def saved_progress(self) -> bool:
    """Whether anything worth keeping was saved: a checkpoint or results."""
    return bool(ckpt.step_dirs(self.checkpoints) or os.path.isdir(self.best)
                or os.path.exists(self.results))

  def prepare(self, config: TrainConfig, report=warn) -> bool:
    """Creates or checks the directory (and locks it), then writes config.json
    (`config` must be validated). Returns True if resuming."""
    try:
      os.makedirs(self.path, exist_ok=True)
      # A probe of its own: processes starting on one directory at once never share it.
      fd, probe = tempfile.mkstemp(dir=self.path, prefix=storage.TMP_PREFIX, suffix='-probe')
      os.close(fd)
      storage.remove_quietly(probe)
    except OSError as e:
      raise ConfigError(f'output directory {self.path} is not writable: {storage.cause(e)}') from e
    self.lock()
    storage.remove_stale_temporaries(self.path)
    if os.path.exists(self.config):
      try:
        saved = load_config_file(self.config)
      except ConfigError as e:
        raise RunError(f'{e}; move it away (or use another --out) to start this run '
                       'there') from e
      conflicts = config_conflicts(saved, config)
      if conflicts and self.saved_progress():
        raise RunError(f'{self.path} holds a run with another configuration ('
                       + '; '.join(conflicts) + '); use another --out or the same settings')
      if conflicts:
        report(f'warning: {self.config} named other settings ({"; ".join(conflicts)}) but '
               'that start saved nothing; replaced')
      resuming = not conflicts
    else:
      resuming = False
    storage.atomic_write_json(self.config, config.to_json(), allow_nan=False)
    return resuming

  def append_metrics(self, record: dict) -> None:
    storage.append_line(self.metrics, json.dumps(record))
    self.tracker.log(record)

  def read_metrics(self, report=warn) -> list[dict]:
    """The records of metrics.jsonl; a torn or foreign line is skipped with a warning."""
    if not os.path.exists(self.metrics):
      return []
    try:
      records, problems = storage.read_jsonl(self.metrics)
    except OSError as e:
      raise storage.storage_error(self.metrics, e, 'read') from e
    for problem in problems:
      report(f'warning: {self.metrics}: {problem}; skipped')
    return records

  def truncate_metrics(self, after_step: int, report=warn) -> None:
    """On resume, drop records the resumed run will write again (and any torn line).

    A run that starts over (`after_step` 0: no checkpoint survived) over records of
    later steps adds them to metrics-before-restart.jsonl, with a warning: they are
    the only trace of the lost training, and the new records replace them here."""
    if not os.path.exists(self.metrics):
      return
    records = self.read_metrics(report)
    steps = [r.get('step', 0) if isinstance(r.get('step', 0), (int, float)) else math.inf
             for r in records]
    keep = [r for r, step in zip(records, steps)
            if step <= after_step and r.get('kind') != 'test']
    later = [step for step in steps if after_step < step < math.inf]
    if after_step == 0 and later:
      aside = self.metrics_before_restart
      earlier = open(aside).read() if os.path.exists(aside) else ''   # an earlier lost start
      storage.atomic_write(aside, earlier + _jsonl(records))
      report(f'warning: {self.path} has metrics up to step {max(later)} but no checkpoint to '
             f'resume from (removed, or lost with the machine); the run starts over at step 0 '
             f'and those records are kept in {aside}')
    storage.atomic_write(self.metrics, _jsonl(keep))


def _jsonl(records: list[dict]) -> str:
  return ''.join(json.dumps(r) + '\n' for r in records)


# ----------------------------------------------------------- best checkpoint
def _best_problem(path: str, params_template, step: int) -> Optional[str]:
  """Why the best checkpoint at `path` is not the parameters of `step` (None: it is)."""
  if not os.path.isdir(path):
    return 'is missing'
  problem = ckpt.verify(path, params_template)
  if problem:
    return f'is unusable ({problem})'
  held = (ckpt.read_metadata(path) or {}).get('step')
  if held != step:
    return f'holds step {held}, not the best step {step}'
  return None


def load_best(run: RunDir, state_template, best: dict, report=warn, repair: bool = True):
  """The parameters of the best validation step `best['step']`: from checkpoints/best,
  else from the step checkpoint of that step (kept for this: the same parameters),
  which then re-establishes best/ (`repair`). RunError when neither holds them."""
  problem = _best_problem(run.best, state_template['params'], best['step'])
  score = best.get('score')
  what = (f"validation score {score:.4f} at step {best['step']}"
          if isinstance(score, (int, float)) else f"step {best['step']}")
  if problem is None:
    return ckpt.load(run.best, state_template['params'])[0]
  source = run.step_checkpoint(best['step'])
  source_problem = ckpt.verify(source, state_template) if os.path.isdir(source) else 'missing'
  if source_problem is None:
    state, _ = ckpt.load(source, state_template)
    if repair:
      ckpt.save(run.checkpoints, 'best', state['params'], {'step': best['step'], 'best': best})
      report(f'warning: best checkpoint {run.best} {problem}; re-established from {source} '
             f'(the same parameters: {what})')
    else:
      report(f'warning: best checkpoint {run.best} {problem}; using {source} (the same '
             'parameters); run the training command again to re-establish best/')
    return state['params']
  raise RunError(
      f"best checkpoint {run.best} {problem}, and {source}, which held the same parameters, is "
      f"{source_problem if source_problem == 'missing' else 'unusable: ' + source_problem}: the "
      f'best parameters ({what}) cannot be re-established. Training is deterministic: move {run.checkpoints} away and run the '
      'training command again, which trains from the start and reproduces it')


def _install_stop_handlers(flag: list) -> dict:
  """SIGTERM/SIGINT end the run at the next step boundary, after a checkpoint
  (`flag` gets (number, name) of each signal received)."""
  import signal
  import threading
  if threading.current_thread() is not threading.main_thread():
    return {}
  previous = {}
  for sig in (signal.SIGTERM, signal.SIGINT):
    def handler(signum, frame):
      if flag and callable(previous.get(signum)):   # a second one: the caller's rule, at once
        previous[signum](signum, frame)
      flag.append((int(signum), signal.Signals(signum).name))
    previous[sig] = signal.signal(sig, handler)
  return previous


def _restore_handlers(previous: dict) -> None:
  import signal
  for sig, handler in previous.items():
    signal.signal(sig, handler)


# ---------------------------------------------------------------- run model
@dataclasses.dataclass
class RunModel:
  """What training and testing a run share, built from its configuration
  (`build_run_model`): per algorithm (one; several for multi-task) its processed
  spec, its method (batches, init, loss) and its network.

  Attributes:
    config: the run's configuration.
    names: the algorithms, in their order (algorithm i's parameters are algo_{i}_...).
    specs: the processed dm-clrs spec of each.
    tasks: the `nar.methods.Method` of each (its own configuration).
    examples: an example training batch of each (shapes for init).
    net: the whole network (every algorithm's encoders/decoders, one processor).
    nets: the network bound to each algorithm (`net` itself for one).
  """
  config: TrainConfig
  names: tuple
  specs: list
  tasks: list
  examples: list
  net: hk.Transformed
  nets: list

  @property
  def multi_task(self) -> bool:
    return len(self.names) > 1

  def init_params(self, key, examples: Optional[list] = None) -> dict:
    examples = self.examples if examples is None else examples
    if not self.multi_task:
      return self.tasks[0].init(self.net, key, examples[0])
    params = init_network(self.net, key, examples)
    for i, task in enumerate(self.tasks):      # e.g. Hint-ReLIC's critics, algo_{i}_relic_critic
      params.update(task.extra_params(jax.random.fold_in(key, i + 1)))
    return params

  def initializer(self, optimizer: optax.GradientTransformation):
    """(key, examples) -> {'params', 'opt_state'} of a fresh run (`examples`:
    `self.examples`), jitted: one program instead of op by op (each of the ~100
    initialisers compiled a small program of its own in every run, seconds,
    too small for the persistent cache). The examples are arguments, not
    constants, so runs of other seeds share the program. The values of op by
    op up to float rounding (XLA fuses the arithmetic its own way; bit for bit
    under its default optimisation where measured: tests/test_compilation.py)."""
    def state(key, examples):
      params = self.init_params(key, examples)
      return {'params': params, 'opt_state': optimizer.init(params)}
    return jax.jit(state)

  def init_state(self, key, optimizer: optax.GradientTransformation) -> dict:
    return self.initializer(optimizer)(key, self.examples)

  def state_template(self, optimizer: optax.GradientTransformation):
    """The structure of a run's training state (parameters, the method's own
    included, and the optimizer's), traced only: values come from checkpoints."""
    def state():
      params = self.init_params(jax.random.PRNGKey(0))
      return {'params': params, 'opt_state': optimizer.init(params)}
    return jax.eval_shape(state)

  def predicts(self, placement: Optional[Placement] = None) -> list:
    """A jitted predict function per algorithm."""
    return [make_predict(n, sp, placement) for n, sp in zip(self.nets, self.specs)]


def build_run_model(config: TrainConfig, method_factory: Optional[Callable] = None) -> RunModel:
  """The `RunModel` of `config`; `method_factory(config, spec)` makes each
  algorithm's method (default: the registered one, `nar.methods.get`)."""
  names = config.algorithms
  specs = [processed_spec(a) for a in names]
  if method_factory is None:
    from nar import methods
    tasks = methods.task_methods(config, specs)
  else:
    tasks = [method_factory(c, sp) for c, sp in zip(task_configs(config), specs)]
  examples = [t.example_batch() for t in tasks]
  if len(names) > 1:
    net = build_network(config, specs, examples)
    nets = [bind_algorithm(net, i) for i in range(len(names))]
  else:
    net = build_network(config, specs[0], examples[0])
    nets = [net]
  return RunModel(config, names, specs, tasks, examples, net, nets)


def test_algorithms(model: RunModel, predicts: list, params, size: int, *,
                    num_samples: Optional[int] = None, placement: Optional[Placement] = None,
                    progress: bool = False) -> list[dict]:
  """The test phase, shared by `nar train` (at the configured test size) and
  `nar evaluate` (at any): `clrs.evaluate`-equal scores of `params` on each
  algorithm's test split of `size`.

  Args:
    model: the run's model; predicts: `model.predicts(placement)`.
    params: the parameters tested (placed like `placement` says, if given).
    size: the test problems' size; num_samples: None for the split's own count.
  Returns:
    One score dict per algorithm of the model, in its order.
  """
  config = model.config
  out = []
  for name, predict, spec in zip(model.names, predicts, model.specs):
    split = data_lib.load_split(name, 'test', size=size, num_samples=num_samples,
                                cache_dir=config.resolved_cache_dir(), progress=progress)
    label = f'testing {name} n={size}' if progress else None
    out.append(evaluate_split(predict, params, split, spec, config.eval_batch_size, placement,
                              progress=label, hidden=config.hidden))
  return out


# --------------------------------------------------------------------- train
def train(config: TrainConfig, *, progress: bool = True, stop_after: Optional[int] = None,
          method_factory: Optional[Callable] = None) -> dict:
  """Trains, validates, tests; returns the results dict (also written to
  `results.json`). `stop_after` ends the process's work at that step without
  finishing (used to test resumption)."""
  # What the run trains and what its config.json says: the method's fixed values applied.
  config = config.validate().as_trained()
  check_sizes(config)
  check_runnable(config)       # before anything is written: nothing blocks a corrected command
  tracking.check_available(config)
  check_memory(config)         # nor anything generated: a run that cannot fit is refused first
  run = RunDir(config.out)
  try:
    return _train(run, config, progress, stop_after, method_factory)
  finally:
    run.tracker.close()
    run.unlock()


def check_memory(config: TrainConfig):
  """The run's memory plan against the free memory of its devices (and host):
  ConfigError, in one line with the nearest settings that fit, when it cannot fit
  (`nar.memory`). NAR_MEMORY_CHECK=0 turns the refusal off (the plan is an estimate)."""
  if os.environ.get('NAR_MEMORY_CHECK', '1').lower() in ('0', 'off', 'false', 'no'):
    return None
  shared = jax.default_backend() == 'cpu'
  return check_training_memory(config, free=free_memory_bytes(), devices=len(jax.devices()),
                               host_free=None if shared else host_free_bytes(), shared=shared)


@dataclasses.dataclass
class _Reporting:
  """Who writes and who speaks: with several hosts, process 0 owns the run
  directory (`writer`) and only it shows progress; warnings (repairs, skipped
  files) are shown even in a quiet run."""
  writer: bool
  progress: bool

  def say(self, msg: str) -> None:
    if self.progress:
      print(msg, file=sys.stderr, flush=True)

  def warn(self, msg: str) -> None:
    if self.writer:
      warn(msg)


@dataclasses.dataclass
class _Progress:
  """Where training stands: the state, the next step, the best validation so far
  ({'score', 'step'} and, multi-task, 'per_algorithm') and the seconds spent,
  carried through checkpoints so that a resumed run reports what it cost in all
  its processes."""
  state: dict
  step: int
  best: dict
  timings: dict


def _train(run: RunDir, config: TrainConfig, progress: bool, stop_after: Optional[int],
           method_factory: Optional[Callable]) -> dict:
  writer = distributed.is_writer()
  io = _Reporting(writer=writer, progress=progress and writer)
  resuming = run.prepare(config, report=io.warn) if writer else False
  placement = Placement.create(config.batch_size)
  enable_compilation_cache(config.resolved_cache_dir())
  model = build_run_model(config, method_factory)
  hosts = f', {jax.process_count()} processes' if jax.process_count() > 1 else ''
  io.say(f'[nar] {config.algorithm}: {config.method}, {config.processor} hidden {config.hidden}, '
         f'batch {config.batch_size}, {config.steps} steps, seed {config.seed}, '
         f'{len(jax.devices())} {jax.default_backend()} device(s){hosts}')
  optimizer = make_optimizer(config)
  base_key = jax.random.PRNGKey(config.seed)
  # One host compiles its programs ahead of time, several at once; with several
  # hosts each compiles a program when it first runs it, as they all do.
  precompiler = Precompiler(None if jax.process_count() == 1 else 0)
  compile_log = CompileLog().start()
  programs = None
  try:
    programs = _RunPrograms(model, optimizer, placement, precompiler, base_key,
                            _program_store(model, placement))
    now = _start_or_resume(run, model, programs, resuming, io)
    if writer:
      run.truncate_metrics(now.step, report=io.warn)
      run.tracker = tracking.open_trackers(config, run.path, now.step)
    now.state = placement.replicate(now.state)
    stopped = _train_loop(run, model, placement, programs, base_key, now, io, stop_after)
    if stopped is not None:
      return stopped
    return _test_best(run, model, programs.predicts, placement, now, io, compile_log)
  finally:
    if programs is not None and programs.prefetch is not None:
      programs.prefetch.close()
    precompiler.close()
    compile_log.stop()


class _RunPrograms:
  """The programs of a run, compiled ahead of time (`nar.compilation`) as soon as
  the shapes of their arguments are known, in the order they are needed: the
  initialisation, the training step of each batch of the first cycle of
  training sizes (every planned shape), validation and test.

  Attributes:
    init: (key, examples) -> the fresh state; updates: the training step of each
      algorithm (`make_update`); predicts: the predict of each (`make_predict`).
    state_avals: the training state's shapes, dtypes and placement.
    prefetch: the training batches (`data.prefetcher`), from `start_training`.
  """

  def __init__(self, model: RunModel, optimizer, placement: Placement,
               precompiler: Precompiler, base_key, store: Optional[ProgramStore] = None):
    self.model, self.placement, self.base_key = model, placement, base_key
    init, updates, predicts, self.state_avals = _jitted_programs(model, optimizer, placement)
    self.init = precompiler.wrap(init, store, 'init')
    self.updates = [precompiler.wrap(u, store, f'update{i}', donate_argnums=(0, 1))
                    for i, u in enumerate(updates)]
    self.predicts = [precompiler.wrap(p, store, f'predict{i}') for i, p in enumerate(predicts)]
    self.prefetch = None
    self._ahead: collections.deque = collections.deque()

  def start_training(self, step: int) -> None:
    """Starts preparing batches from `step` on, and compiling the training step
    of each of the first cycle's batches (one per training size and algorithm)."""
    config, tasks = self.model.config, self.model.tasks
    self.prefetch = data_lib.prefetcher(TaskBatches(tasks), step, config.prefetch,
                                        config.sampling_processes)
    count = len(tasks)
    cycle = count * max(len(data_lib.train_sizes(a, config.train_sizes))
                        for a in self.model.names)
    for k in range(step, min(config.steps, step + cycle)):
      placed = tasks[k % count].place(next(self.prefetch), self.placement)
      self.updates[k % count].precompile(
          self.state_avals['params'], self.state_avals['opt_state'],
          jax.random.fold_in(self.base_key, k), *placed)
      self._ahead.append(placed)

  def next_batch(self, step: int):
    """The placed training item of `step` (the loop asks for them in order)."""
    if self._ahead:
      return self._ahead.popleft()
    tasks = self.model.tasks
    return tasks[step % len(tasks)].place(next(self.prefetch), self.placement)

  def precompile_evaluation(self, index: int, split: Batch, batch_size: int) -> None:
    """Starts compiling algorithm `index`'s predict for the batches `evaluate_split`
    will cut `split` into."""
    for placed in evaluation_shapes(split, batch_size, self.placement, self.model.config.hidden):
      self.predicts[index].precompile(self.state_avals['params'], placed)


# The jitted programs of this process's runs, by what they are traced from
# (`_programs_key`): a later run of the same configuration in this process (the
# seeds of `nar sweep --workers 1`, the tests) traces and lowers nothing again
# (seconds a program) and finds its executables compiled.
_JITTED: collections.OrderedDict = collections.OrderedDict()
_JITTED_KEEP = 8
# Settings that reach no traced function (only host-side work, or the shapes of
# the arguments: those are the programs' own cache keys).
_UNTRACED = ('seed', 'out', 'steps', 'prefetch', 'log_every', 'sampling_processes',
             'eval_every', 'keep_checkpoints', 'cache_dir', 'test_size', 'val_size',
             'test_samples', 'val_samples', 'eval_batch_size', 'grad_terms_every', 'log')


def _programs_key(model: RunModel, placement: Placement, in_process: bool = True) -> str:
  """What a run's jitted functions are traced from: each algorithm's method
  (its class and settings), spec dimensions and network settings, the devices,
  the module-level switches the network reads, and JAX's numeric settings.
  `in_process`: the method classes by identity too (a test's class of the
  same name); without it, the key means the same in another process."""
  from nar import layers, model as model_lib, processors
  tasks = []
  for task, example in zip(model.tasks, model.examples):
    settings = {k: v for k, v in task.config.to_json().items() if k not in _UNTRACED}
    tasks.append([f'{type(task).__module__}.{type(task).__qualname__}',
                  id(type(task)) if in_process else None, task.param_prefix, settings,
                  sorted(nb_dims_of(example.inputs, example.hints, example.outputs).items())])
  switches = (layers.WEIGHT_GRAD, layers.TRANSPOSED_GRAD_MIN_ROWS,
              layers.TRANSPOSED_GRAD_MAX_WIDTH, layers.TRANSPOSED_GRAD_MIN_OUT_WIDTH,
              processors.MAX_PLUS_BLOCK_ELEMENTS, model_lib.INIT_RUNS_FORWARD,
              jax.config.jax_enable_x64, str(jax.config.jax_default_matmul_precision))
  config = {k: v for k, v in model.config.to_json().items() if k not in _UNTRACED}
  return json.dumps([config, tasks, repr(net_config_of(model.config, _lengths_vary(model))),
                     [d.id for d in placement.mesh.devices.flat], repr(switches)],
                    sort_keys=True, default=repr)


def _program_store(model: RunModel, placement: Placement) -> Optional[ProgramStore]:
  """The store of traced programs beside the persistent compilation cache
  (`<cache>/traced`), for a run on one device of one process (several: each
  process traces its programs), with the code, the libraries and the run's
  traced settings as its context; None where the compilation cache is off."""
  directory = compile_cache_dir(model.config.resolved_cache_dir())
  if directory is None or placement.mesh.size > 1 or jax.process_count() > 1:
    return None
  return ProgramStore(os.path.join(directory, 'traced'),
                      _code_fingerprint(model) + _programs_key(model, placement, in_process=False))


def _code_fingerprint(model: RunModel) -> str:
  """The versions of the libraries and a hash of the source of every loaded
  module of this project (nar, augment) and of the modules of the run's
  methods and processor: a changed line traces anew."""
  import hashlib
  from nar import registry
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  files = set()
  for name, module in list(sys.modules.items()):
    path = getattr(module, '__file__', None)
    if path and name.split('.')[0] in ('nar', 'augment') and path.startswith(root):
      files.add(path)
  extra = [sys.modules.get(type(t).__module__) for t in model.tasks]
  processor = registry.processors().get(model.config.processor)
  if processor is not None:
    extra.append(sys.modules.get(getattr(processor.factory, '__module__', ''), None))
  files |= {m.__file__ for m in extra if getattr(m, '__file__', None)}
  digest = hashlib.sha256()
  for path in sorted(files):
    try:
      with open(path, 'rb') as f:
        digest.update(path.encode() + b'\0' + f.read())
    except OSError:
      digest.update(path.encode() + b'\0unreadable')
  return json.dumps([digest.hexdigest(), versions_of_libraries()])


def versions_of_libraries() -> dict:
  import clrs
  return {'python': platform.python_version(), 'jax': jax.__version__,
          'jaxlib': getattr(jax.lib, '__version__', None), 'dm-haiku': hk.__version__,
          'optax': optax.__version__, 'numpy': np.__version__, 'dm-clrs': clrs.__version__,
          'backend': jax.default_backend(), 'device': jax.devices()[0].device_kind}


def _lengths_vary(model: RunModel) -> bool:
  return any(np.unique(np.asarray(e.lengths)).size > 1 for e in model.examples)


def _jitted_programs(model: RunModel, optimizer, placement: Placement):
  """(init, [update per algorithm], [predict per algorithm], the training
  state's shapes and placement) of a run: jitted anew, or those of an earlier
  run of this process traced from the same (`_programs_key`; `optimizer` is
  `make_optimizer(model.config)`)."""
  key = _programs_key(model, placement)
  if key in _JITTED:
    _JITTED.move_to_end(key)
    return _JITTED[key]
  multi = model.multi_task
  programs = (model.initializer(optimizer),
              [make_update(t.loss_fn(n), optimizer, placement,
                           algorithm_index=i if multi else None)
               for i, (t, n) in enumerate(zip(model.tasks, model.nets))],
              model.predicts(placement),
              jax.tree_util.tree_map(
                  lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=placement.replicated),
                  model.state_template(optimizer)))
  _JITTED[key] = programs
  while len(_JITTED) > _JITTED_KEEP:
    _JITTED.popitem(last=False)
  return programs


def _start_or_resume(run: RunDir, model: RunModel, programs: _RunPrograms, resuming: bool,
                     io: _Reporting) -> _Progress:
  """A fresh initialisation, or the newest intact checkpoint's state (every host
  gets the writer's); also starts the training batches and the programs'
  compilation (`programs.start_training`), the initialisation's first."""
  base_key = programs.base_key
  init_key = jax.random.fold_in(base_key, -1 % (2 ** 31))
  state = None
  start_step, best = 0, {'score': -math.inf, 'step': -1}
  timings = {'compile_s': 0.0, 'train_s': 0.0, 'eval_s': 0.0, 'diagnostics_s': 0.0,
             'steps_timed': 0, 'processes': 1}
  if resuming:
    for name in ckpt.recover_all(run.checkpoints):
      io.warn(f'warning: checkpoint {name} was being replaced when the last process stopped; '
              'its previous version is put back')
    found = ckpt.latest_good(run.checkpoints, programs.state_avals, report=io.warn)
    if found is not None:
      state, meta, path = found
      start_step, best = meta['step'], meta['best']
      earlier = meta.get('timings') or {}     # absent in checkpoints written before
      for key in ('compile_s', 'train_s', 'eval_s', 'diagnostics_s', 'steps_timed'):
        timings[key] += earlier.get(key, 0)
      timings['processes'] += earlier.get('processes', 0)
      io.say(f'[nar] resuming from {path} (step {start_step})')
      if best['step'] >= 0:     # checked now, not at the end: re-established or refused
        load_best(run, state, best, report=io.warn)
  if state is None:
    programs.init.precompile(init_key, model.examples)
  programs.start_training(start_step)
  if state is None:
    t0 = time.perf_counter()
    state = programs.init(init_key, model.examples)
    timings['compile_s'] += time.perf_counter() - t0
  state, start_step, best_score, best_step = distributed.broadcast_from_writer(
      (jax.device_get(state), np.int64(start_step), np.float64(best['score']),
       np.int64(best['step'])))
  # What only the writer uses (the per-algorithm scores of the best step) is kept as it read it.
  extra = {k: v for k, v in best.items() if k not in ('score', 'step')}
  best = {'score': float(best_score), 'step': int(best_step), **extra}
  return _Progress(state=state, step=int(start_step), best=best, timings=timings)


@dataclasses.dataclass
class TaskBatches:
  """Training item of global step k: the tasks take turns (multi-task), each
  with its own step count. Picklable, for sampling processes."""
  tasks: list

  def __call__(self, k: int):
    return self.tasks[k % len(self.tasks)].batch(k // len(self.tasks))


def _train_loop(run: RunDir, model: RunModel, placement: Placement, programs: _RunPrograms,
                base_key, now: _Progress, io: _Reporting,
                stop_after: Optional[int]) -> Optional[dict]:
  """Steps from `now.step` to config.steps (updating `now`), validating and
  checkpointing every eval_every steps. Multi-task: step k trains algorithm
  k mod A on batch k // A of its own stream, with its own jitted step.

  Returns:
    None when the last step is done; {'stopped_at': step} at `stop_after`.
  Raises:
    RunError on a non-finite loss or a stop signal (after saving a checkpoint).
  """
  config, names, tasks = model.config, model.names, model.tasks
  count = len(names)
  multi = model.multi_task
  cache_dir = config.resolved_cache_dir()
  vals = [data_lib.load_split(a, 'val', size=config.val_size, num_samples=config.val_samples,
                              cache_dir=cache_dir, progress=io.progress) for a in names]
  predicts, updates = programs.predicts, programs.updates
  for i, val in enumerate(vals):
    programs.precompile_evaluation(i, val, config.eval_batch_size)
  if now.step < config.steps:     # the test's programs too, while the first steps compile
    for i, name in enumerate(names):
      test = data_lib.load_split(name, 'test', size=config.test_size,
                                 num_samples=config.test_samples, cache_dir=cache_dir,
                                 progress=io.progress)
      programs.precompile_evaluation(i, test, config.eval_batch_size)
  part_norms = [make_part_gradient_norms(t.loss_fn(n), t.loss_parts, placement)
                if len(t.loss_parts) > 1 and config.grad_terms_every > 0 else None
                for t, n in zip(tasks, model.nets)]
  timings = now.timings
  start_step = now.step

  def save_state(step: int) -> Optional[str]:
    if not io.writer:
      return None
    meta = {'step': step, 'best': now.best, 'config': config.to_json(),
            'timings': dict(timings)}
    path = ckpt.save(run.checkpoints, f'step-{step:08d}', jax.device_get(now.state), meta)
    # The best step's checkpoint stays: the second copy of the best parameters.
    ckpt.prune(run.checkpoints, config.keep_checkpoints, protect=now.best['step'])
    return path

  def validate(step: int) -> None:
    t1 = time.perf_counter()
    per = [evaluate_split(pr, now.state['params'], v, sp, config.eval_batch_size, placement)
           for pr, v, sp in zip(predicts, vals, model.specs)]
    timings['eval_s'] += time.perf_counter() - t1
    if multi:
      # Model selection on the sum of the per-algorithm scores, as dm-clrs's run.py.
      scores = {'score': sum(x['score'] for x in per),
                'per_algorithm': {a: x for a, x in zip(names, per)}}
    else:
      scores = per[0]
    if io.writer:
      run.append_metrics({'kind': 'val', 'step': step, **scores})
    if scores['score'] > now.best['score']:
      now.best = {'score': scores['score'], 'step': step}
      if multi:
        now.best['per_algorithm'] = {a: x['score'] for a, x in zip(names, per)}
      if io.writer:
        ckpt.save(run.checkpoints, 'best', jax.device_get(now.state['params']),
                  {'step': step, 'best': now.best})

  last_good = None
  timed_at_record = (timings['steps_timed'], timings['train_s'])
  seen_shapes = set()
  bar = None
  if io.progress:
    # In a log file (not a terminal) a refresh every 30 s keeps the log readable.
    bar = TrainingBar(config.algorithm, config.steps, initial=start_step, file=sys.stderr)
    if math.isfinite(now.best['score']):      # resumed after a validation
      bar.validated(now.best['score'])
  stop_signal = []
  previous_handlers = _install_stop_handlers(stop_signal)
  try:
    while now.step < config.steps:
      step = now.step
      if stop_after is not None and step >= stop_after:
        return {'stopped_at': step}
      if stop_signal:
        path = save_state(step)
        signum, name = stop_signal[0]
        raise Stopped(signum, name, f'at step {step}: checkpoint saved at {path}; run the same '
                      'command again to resume')
      placed = programs.next_batch(step)
      task = step % count
      shape = _shape_key(task, placed)
      first_of_shape = shape not in seen_shapes
      if bar is not None and first_of_shape:
        bar.compiling(not updates[task].ready(now.state['params'], now.state['opt_state'],
                                              base_key, *placed))
      if part_norms[task] is not None and step % config.grad_terms_every == 0:
        # Before the update: its parameters are donated to it.
        t_diag = time.perf_counter()
        record = gradient_shares(part_norms[task](now.state['params'], jax.random.fold_in(
            base_key, step), *placed))
        timings['diagnostics_s'] = timings.get('diagnostics_s', 0.0) + time.perf_counter() - t_diag
        if io.writer:
          run.append_metrics({'kind': 'grad_terms', 'step': step,
                              **({'algorithm': names[task]} if multi else {}), **record})
      t0 = time.perf_counter()
      params, opt_state, loss, terms, gnorm = updates[task](
          now.state['params'], now.state['opt_state'], jax.random.fold_in(base_key, step),
          *placed)
      loss = float(loss)
      dt = time.perf_counter() - t0
      if first_of_shape:      # the first step of each shape compiles (or loads) it
        seen_shapes.add(shape)
        timings['compile_s'] += dt
      else:
        timings['train_s'] += dt
        timings['steps_timed'] += 1
      if not (math.isfinite(loss) and math.isfinite(float(gnorm))):
        terms = {k: float(v) for k, v in jax.device_get(terms).items()}
        raise RunError(
            f'non-finite loss at step {step}: loss={loss}, grad norm={float(gnorm)}, terms='
            + ', '.join(f'{k}={v:.4g}' for k, v in terms.items())
            + f'; last good checkpoint: {last_good or "none"} (kept)')
      now.state = {'params': params, 'opt_state': opt_state}
      now.step = step = step + 1
      if step % config.log_every == 0 or step == config.steps:
        rec = {'kind': 'train', 'step': step, 'loss': loss, 'grad_norm': float(gnorm)}
        if multi:
          rec['algorithm'] = names[task]
        # Training throughput since the last record, compiling steps left out.
        timed = timings['steps_timed'] - timed_at_record[0]
        if timed:
          rec['samples_per_s'] = (timed * config.batch_size
                                  / (timings['train_s'] - timed_at_record[1]))
        timed_at_record = (timings['steps_timed'], timings['train_s'])
        rec.update({k: float(v) for k, v in jax.device_get(terms).items()})
        if io.writer:
          run.append_metrics(rec)
      if bar is not None:
        bar.step(dt, steady=not first_of_shape, loss=loss)
      if step % config.eval_every == 0 or step == config.steps:
        validate(step)
        if bar is not None:
          bar.validated(now.best['score'])
        last_good = save_state(step)
    if stop_signal:     # came during the last steps: stopped before the test, as asked
      signum, name = stop_signal[0]
      raise Stopped(signum, name, f'at step {now.step}, the last: checkpoint saved at '
                    f'{last_good}; run the same command again to test and write results.json')
  finally:
    _restore_handlers(previous_handlers)
    if bar is not None:
      bar.close()
  return None


def _test_best(run: RunDir, model: RunModel, predicts: list, placement: Placement,
               now: _Progress, io: _Reporting, compile_log: Optional[CompileLog] = None) -> dict:
  """The OOD test of the best validation step's parameters (and no others);
  writes and returns results.json's content."""
  config, names, best, timings = model.config, model.names, now.best, now.timings
  multi = model.multi_task
  test_params = jax.device_get(now.state['params'])
  tested_step = best['step'] if best['step'] >= 0 else now.step
  if io.writer and best['step'] >= 0:
    test_params = load_best(run, jax.device_get(now.state), best, report=io.warn)
  test_params = placement.replicate(distributed.broadcast_from_writer(test_params))
  t1 = time.perf_counter()
  tests = test_algorithms(model, predicts, test_params, config.test_size,
                          num_samples=config.test_samples, placement=placement,
                          progress=io.progress)
  timings['test_s'] = time.perf_counter() - t1
  if io.writer:
    for a, x in zip(names, tests):
      run.append_metrics({'kind': 'test', 'step': now.step, 'size': config.test_size,
                          **({'algorithm': a} if multi else {}), **x})
  samples_per_s = (timings['steps_timed'] * config.batch_size / timings['train_s']
                   if timings['train_s'] > 0 else None)
  if compile_log is not None:     # this process's: a resumed run compiled again
    compiled = compile_log.summary()
    timings['compile_programs'] = compiled['programs']
    timings['compile_from_cache'] = compiled['from_cache']
    io.say('[nar] compiled ' + compile_log.describe())
  # A multi-task run's own score is the mean over its algorithms; each is in per_algorithm.
  test_scores = {'score': sum(x['score'] for x in tests) / len(tests)} if multi else tests[0]
  results = {
      'algorithm': config.algorithm, 'method': config.method, 'seed': config.seed,
      'config': config.to_json(), 'versions': versions(),
      'best_val': best, 'test': test_scores, 'test_score': test_scores['score'],
      'test_size': config.test_size, 'steps': now.step, 'tested_step': tested_step,
      'timings': {**timings, 'train_samples_per_s': samples_per_s},
  }
  if multi:
    results['algorithms'] = list(names)
    results['selection'] = 'sum of the per-algorithm validation scores'
    results['val_score_sum'] = best['score']
    results['per_algorithm'] = {
        a: {'best_val': {'score': (best.get('per_algorithm') or {}).get(a), 'step': best['step']},
            'test_score': x['score'], 'test': x} for a, x in zip(names, tests)}
  if io.writer:
    storage.atomic_write_json(run.results, results)
  for a, x in zip(names, tests):
    val_score = best['score'] if not multi else (best.get('per_algorithm') or {}).get(a)
    val_text = f'{val_score:.4f}' if isinstance(val_score, float) else 'n/a'
    io.say(f"[nar] {a} {config.method}: best val {val_text} at step {best['step']}"
           f"{' (selected on the sum over algorithms)' if multi else ''}; OOD test "
           f"(n={config.test_size}) score {x['score']:.4f}")
  return results


# ------------------------------------------------------------------ evaluate
def evaluate_run(run_dir: str, size: int = 64, progress: bool = True,
                 num_samples: Optional[int] = None, record: bool = True) -> dict:
  """Re-evaluates the best checkpoint of a run at another size (one size of
  `evaluate_run_sizes`)."""
  return evaluate_run_sizes(run_dir, [size], progress=progress, num_samples=num_samples,
                            record=record)[0]


def _saved_run(run_dir: str) -> tuple:
  """(`RunDir`, its saved configuration) of a run to evaluate; RunError if
  `run_dir` is not a run directory."""
  run = RunDir(run_dir)
  if not os.path.exists(run.config):
    raise RunError(f'{run_dir} is not a run directory (no config.json)')
  return run, load_config(run.config)


def _best_of_run(run: RunDir, config: TrainConfig) -> tuple:
  """(`RunModel`, best validation record, its parameters) of a saved run, read
  without repairing anything; RunError when there is no usable best checkpoint."""
  enable_compilation_cache(config.resolved_cache_dir())
  if not os.path.isdir(run.checkpoints) or not os.listdir(run.checkpoints):
    raise RunError(f'{run.path} has no best checkpoint yet (checkpoints/best)')
  model = build_run_model(config)
  best = _recorded_best(run)
  if best is None:
    raise RunError(f'{run.path} has no usable best checkpoint (checkpoints/best) and no record '
                   'of its best step; run the training command again')
  params = load_best(run, model.state_template(make_optimizer(config)), best, repair=False,
                     report=warn)
  return model, best, params


def evaluate_run_sizes(run_dir: str, sizes: Sequence[int], progress: bool = True,
                       num_samples: Optional[int] = None, record: bool = True) -> list:
  """Tests the best checkpoint of a run at each of `sizes` (the test split's
  seed, `num_samples` samples, default the split's own count), with the test
  phase `nar train` ends with (`test_algorithms`).

  Returns:
    One dict per size: run, algorithm, size, checkpoint_step, score and the
    per-output scores; for a multi-task run, score is the mean over its
    algorithms and per_algorithm holds each one's ({'score', 'scores'}). With
    `record`, each is also kept in the run's evaluations.json under its size
    (the newest evaluation of a size wins), where `nar report` reads
    OOD-vs-size curves.
  """
  for size in sizes:
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIZE:
      raise ConfigError(f'evaluation size must be an integer >= {MIN_SIZE} (smaller problems '
                        f'mean nothing), got {size!r}')
  run, config = _saved_run(run_dir)
  model, best, params = _best_of_run(run, config)
  predicts = model.predicts()
  results = []
  for size in sizes:
    per = test_algorithms(model, predicts, params, size, num_samples=num_samples,
                          progress=progress)
    entry = {'run': run_dir, 'algorithm': config.algorithm, 'size': size,
             'checkpoint_step': best['step']}
    if model.multi_task:
      entry['score'] = sum(x['score'] for x in per) / len(per)
      entry['per_algorithm'] = {a: {'score': x['score'],
                                    'scores': {k: v for k, v in x.items() if k != 'score'}}
                                for a, x in zip(model.names, per)}
    else:
      entry.update(per[0])
    results.append(entry)
  if record:
    try:
      record_evaluations(run_dir, results, num_samples)
    except storage.StorageError as e:     # e.g. an archived, read-only run: the scores stand
      warn(f'note: these scores were not saved ({_one_line(e)})')
  return results


def evaluate_invariance(run_dir: str, num_samples: int = 64, pairs_per_twin: int = 8,
                        chunk: int = 16, progress: bool = True, record: bool = True) -> dict:
  """How invariant the best checkpoint's next step is across twins
  (`nar.invariance`), on `num_samples` validation originals of each algorithm
  the augmentations cover, `pairs_per_twin` valid pairs each.

  Returns:
    {'checkpoint_step', 'num_samples', 'pairs_per_twin', 'per_algorithm':
    {algorithm: summary}} (`invariance.summarise`); with `record`, kept in the
    run's evaluations.json under 'invariance'.
  """
  import augment
  from nar import invariance
  from nar.config import method_reads
  from nar.hint_relic import Critics, is_critic, regularised_hints
  from nar.model import make_step_net
  for name, value, low in (('samples', num_samples, 1), ('pairs per twin', pairs_per_twin, 1),
                           ('chunk', chunk, 1)):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
      raise ConfigError(f'invariance {name} must be a positive integer, got {value!r}')
  run, config = _saved_run(run_dir)
  covered = [a for a in config.algorithms if a in augment.supported()]
  if not covered:
    raise ConfigError(f'{config.algorithm} has no augmentation rule: there are no twins to '
                      f'measure invariance on (rules: {", ".join(augment.supported())})')
  model, best, params = _best_of_run(run, config)
  # The hints the run's contrast regularises (all of them for a run without one).
  which = config.relic_hints if method_reads(config.method, 'hint_relic') else 'all'
  per_algorithm = {}
  for i, name in enumerate(model.names):
    if name not in covered:
      continue
    spec, example = model.specs[i], model.examples[i]
    pointers, others = regularised_hints(spec, which)
    samples = data_lib.generate_split(name, 'val', data_lib.eval_size(name, 'val', config.val_size),
                                      data_lib.VAL_SEED, num_samples)
    data = invariance.make_set(samples, spec, augment.get(name), pointers, others,
                               pairs_per_twin, seed=data_lib.VAL_SEED)
    step_net = make_step_net(spec, nb_dims_of(example.inputs, example.hints, example.outputs),
                             net_config_of(config), i if model.multi_task else 0)
    prefix = f'algo_{i}_' if model.multi_task else ''
    critic_params = {k: v for k, v in params.items() if k.split('/')[0] == prefix + 'relic_critic'}
    net_params = {k: v for k, v in params.items() if not is_critic(k)}
    critic = hk.transform(lambda: Critics(config.relic_critic_hidden,
                                          config.relic_critic_hidden // 2,
                                          name=prefix + 'relic_critic')(config.hidden,
                                                                         3 * config.hidden))
    sums = jax.jit(lambda p, c, d, net=model.nets[i], sn=step_net, sp=spec, pt=pointers, ot=others:
                   invariance.invariance_sums(net, sn, sp, p, critic.apply(c, None) if c else None,
                                              d, pt, ot))
    total = None
    parts = list(invariance.chunks(data, min(chunk, num_samples)))
    if progress:
      from tqdm import tqdm
      parts = tqdm(parts, desc=f'invariance {name}', unit='chunk', file=sys.stderr, leave=False)
    for part in parts:
      total = invariance.add_sums(total, sums(net_params, critic_params, part))
    per_algorithm[name] = invariance.summarise(total, with_critics=bool(critic_params))
  result = {'checkpoint_step': best['step'], 'num_samples': num_samples,
            'pairs_per_twin': pairs_per_twin, 'per_algorithm': per_algorithm}
  if record:
    try:
      record_invariance(run_dir, result)
    except storage.StorageError as e:     # e.g. an archived, read-only run: the numbers stand
      print(f'note: this measurement was not saved ({_one_line(e)})', file=sys.stderr, flush=True)
  return result


def _one_line(e: BaseException) -> str:
  return ' '.join(str(e).split())


def _recorded_best(run: RunDir) -> Optional[dict]:
  """The best validation step of a run: from results.json (a finished run), else
  the newest intact step checkpoint, else checkpoints/best's own record."""
  try:
    with open(run.results) as f:
      best = json.load(f).get('best_val')
    if isinstance(best, dict) and isinstance(best.get('step'), int):
      return best
  except (OSError, ValueError, AttributeError):
    pass
  for _, path in ckpt.step_dirs(run.checkpoints):
    if ckpt.verify(path) is None:
      best = (ckpt.read_metadata(path) or {}).get('best')
      if isinstance(best, dict) and isinstance(best.get('step'), int) and best['step'] >= 0:
        return best
      break
  best = (ckpt.read_metadata(run.best) or {}).get('best')
  return best if isinstance(best, dict) and isinstance(best.get('step'), int) else None
