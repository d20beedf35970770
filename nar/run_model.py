"""What a run computes, and where: the pieces built from its configuration
that training (`nar.train`) and evaluation (`nar.eval_run`) share.

* `Placement`: arrays on the devices (the batch axis split over a 1-D mesh of
  every local device, parameters replicated), and `enable_compilation_cache`,
  JAX's persistent compilation cache for the programs below;
* the network (`build_network`, `init_network`), the optimizer
  (`make_optimizer`), the jitted training step (`make_update`: multi-task
  leaves the other algorithms' encoders and decoders alone), the gradient norm
  of each part of a loss (`make_part_gradient_norms`) and the jitted predict
  (`make_predict`);
* `RunModel` (`build_run_model`): per algorithm its spec, method and network.

Nothing here reads or writes a run directory (`nar.run_dir`), caches programs
(`nar.run_programs`) or loops (`nar.train`).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Optional, Sequence

import haiku as hk
import jax
import numpy as np
import optax

from nar.batching import Batch
from nar.config import ConfigError, TrainConfig, compile_cache_dir
from nar.evaluation import hard_outputs
from nar.methods import task_configs
from nar.model import bind_algorithm, make_net, nb_dims_of, net_config_of
from nar.sample import processed_spec


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
