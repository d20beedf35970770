"""The programs of a run: the jitted functions of its `RunModel`, cached in
this process and on disk, and compiled ahead of time.

* `_RunPrograms`: the initialisation, the training step of each algorithm and
  the predict of each, compiled ahead of time (`nar.compilation.Precompiler`) as
  soon as their arguments' shapes are known; it also starts the training
  batches (`TaskBatches`, prepared by `nar.data.prefetcher`);
* `_jitted_programs` and `_JITTED`: the jitted programs of this process's runs,
  by what they are traced from (`_programs_key`);
* `_program_store`: traced programs kept on disk for other processes
  (`nar.compilation.ProgramStore`, keyed by `_code_fingerprint` and
  `_programs_key`).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import platform
import sys
from typing import Optional

import haiku as hk
import jax
import numpy as np
import optax

from nar import data as data_lib
from nar.batching import Batch
from nar.compilation import Precompiler, ProgramStore
from nar.config import compile_cache_dir
from nar.eval_run import evaluation_shapes
from nar.model import nb_dims_of, net_config_of
from nar.run_model import Placement, RunModel, make_update


def _shape_key(task: int, placed) -> tuple:
  """What a jitted step compiles anew for: the task and its arguments' shapes."""
  return (task,) + tuple((np.shape(x), str(getattr(x, 'dtype', type(x).__name__)))
                         for x in jax.tree_util.tree_leaves(placed))


@dataclasses.dataclass
class TaskBatches:
  """Training item of global step k: the tasks take turns (multi-task), each
  with its own step count. Picklable, for sampling processes."""
  tasks: list

  def __call__(self, k: int):
    return self.tasks[k % len(self.tasks)].batch(k // len(self.tasks))


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


def forget_compiled() -> None:
  """This process's compiled programs dropped, as a new process starts: the
  jitted programs of its runs and the program store's executables."""
  _JITTED.clear()
  ProgramStore.forget_compiled()
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
