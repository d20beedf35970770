"""Training methods: what a training batch holds and which loss it gets.

A method is a `Method` registered by name in `nar.registry` (the built-in ones:
`baseline` here, `hint_relic` and its ablations in `nar.hint_relic`); the
trainer (`nar.train`) needs nothing else of it.
"""

from __future__ import annotations

from nar import data as data_lib
from nar.batching import Batch
from nar.config import TrainConfig
from nar.losses import supervised_loss


# Loss terms named with this prefix are the weighted parts the loss is the sum
# of (Hint-ReLIC: 'part_supervised', 'part_contrast', 'part_kl'): the trainer
# measures each part's share of the gradient (`TrainConfig.grad_terms_every`).
PART_PREFIX = 'part_'


class Method:
  """The interface a training method gives the trainer.

  The trainer calls, in order: `example_batch()` (to build the network),
  `init(net, key, example)` (parameters), `loss_fn(net)` (jitted with the
  optimizer), then per step `batch(step)` (host side, in a prefetch thread)
  and `place(item, placement)` (on the devices); the update is
  `loss_fn(net)(params, rng, *place(batch(step), placement))`.
  """

  # Multi-task training (several algorithms, one network): whether the method
  # can be one algorithm's method there. Its parameters are then the shared
  # network's (`init_network`) and each algorithm's `extra_params`, which must
  # be named `param_prefix + ...` so that another algorithm's step leaves them
  # (and their optimizer state) alone.
  supports_multi_task: bool = False

  def __init__(self, config: TrainConfig, spec: dict, param_prefix: str = ''):
    self.config = config
    self.spec = spec
    self.param_prefix = param_prefix

  @classmethod
  def check(cls, config: TrainConfig, spec: dict) -> None:
    """Refuses (ConfigError) a configuration this method cannot train, cheaply,
    before anything is written or sampled. Default: nothing to check."""

  @classmethod
  def check_multi_task(cls, config: TrainConfig) -> None:
    """Refuses (ConfigError) a multi-task configuration (all its algorithms) this
    method cannot train; called besides each algorithm's `check`. Default:
    nothing to check."""

  @classmethod
  def supports(cls, config: TrainConfig, spec: dict) -> bool:
    """Whether the method applies to this algorithm at all; in multi-task
    training an algorithm it does not apply to is trained by the baseline.
    Default: every algorithm."""
    return True

  @property
  def loss_parts(self) -> tuple:
    """The names of the weighted parts its loss sums (terms `PART_PREFIX + name`),
    whose gradient shares the trainer records; () for a loss of one part."""
    return ()

  def extra_params(self, key) -> dict:
    """The method's own parameters besides the network's (named with
    `param_prefix`). Default: none."""
    return {}

  def batch(self, step: int):
    """Training item of step `step`: a pure function of (config.seed, step),
    so a resumed run sees the batches an uninterrupted one would."""
    raise NotImplementedError

  def example_batch(self) -> Batch:
    """A `Batch` of the training distribution, to create parameters."""
    raise NotImplementedError

  def init(self, net, key, example: Batch) -> dict:
    """Parameters: the network's (`net.init`) and any of the method's own."""
    raise NotImplementedError

  def place(self, item, placement) -> tuple:
    """The item on the devices (`placement.batch` / `placement.shard`), as the
    tuple of arguments the loss takes after (params, rng)."""
    raise NotImplementedError

  def loss_fn(self, net):
    """`(params, rng, *placed) -> (loss, dict of scalar terms)`; terms named
    `PART_PREFIX + name` are the weighted parts that sum to the loss, when it
    has more than one."""
    raise NotImplementedError


class Baseline(Method):
  supports_multi_task = True

  def __init__(self, config: TrainConfig, spec: dict, param_prefix: str = ''):
    super().__init__(config, spec, param_prefix)
    self.stream = data_lib.TrainStream(config.algorithm, config.seed, config.batch_size,
                                       config.train_sizes)

  def batch(self, step: int):
    return self.stream.batch(step)

  def example_batch(self) -> Batch:
    return self.stream.batch(0)

  def init(self, net, key, example: Batch):
    return net.init(key, example.inputs, example.hints, example.lengths, example.node_mask,
                    is_training=True)

  def place(self, item, placement):
    return (placement.batch(item),)

  def loss_fn(self, net):
    spec = self.spec

    def loss(params, rng, batch: Batch):
      out = net.apply(params, rng, batch.inputs, batch.hints, batch.lengths, batch.node_mask,
                      is_training=True)
      return supervised_loss(spec, out, batch)
    return loss


def _resolve(config: TrainConfig):
  """(the method's factory, the configuration with the values it fixes applied)."""
  import dataclasses
  from nar import registry
  from nar.config import ConfigError
  try:
    entry = registry.method(config.method)
  except KeyError:
    raise ConfigError(f"unknown method '{config.method}'; choose one of: "
                      f"{', '.join(registry.methods())}") from None
  if entry.overrides:
    config = config.as_trained()
  return entry.factory(), config


def get(config: TrainConfig, spec: dict) -> Method:
  """The method `config.method` names (see `nar.registry`), with the
  configuration values it fixes applied."""
  factory, config = _resolve(config)
  return factory(config, spec)


def task_methods(config: TrainConfig, specs: list) -> list:
  """The method of each algorithm of `config` (`specs` in its order): the
  registered method with its fixed values applied; in multi-task training,
  algorithm i's with parameter prefix `algo_{i}_`, and the baseline for an
  algorithm the method does not apply to (`Method.supports`, e.g. Hint-ReLIC
  without an augmentation rule)."""
  factory, resolved = _resolve(config)
  tasks = task_configs(resolved)
  if len(tasks) == 1:
    return [factory(tasks[0], specs[0])]
  return [factory(c, sp, param_prefix=f'algo_{i}_') if factory.supports(c, sp)
          else Baseline(c, sp, param_prefix=f'algo_{i}_')
          for i, (c, sp) in enumerate(zip(tasks, specs))]


def task_configs(config: TrainConfig) -> list:
  """One configuration per algorithm of `config` (multi-task: `config.algorithms`),
  which its method is built with: that algorithm alone, and its own training
  stream seed (`data.task_seed`). A single-task run's is `config` itself."""
  import dataclasses
  names = config.algorithms
  if len(names) == 1:
    return [config]
  return [dataclasses.replace(config, algorithm=name,
                              seed=data_lib.task_seed(config.seed, i, len(names)))
          for i, name in enumerate(names)]


def check_runnable(config: TrainConfig) -> None:
  """The method's own check of `config` (`Method.check`), e.g. Hint-ReLIC needs
  an augmentation rule for the algorithm: ConfigError before anything is written.
  Multi-task: each algorithm's, and only methods that support it."""
  from nar.config import ConfigError
  from nar.sample import processed_spec
  factory, resolved = _resolve(config)
  if config.multi_task and not getattr(factory, 'supports_multi_task', False):
    raise ConfigError(f'method {config.method} does not support multi-task training (several '
                      'algorithms); train one algorithm at a time with it')
  check = getattr(factory, 'check', None)
  tasks = task_configs(resolved)
  supports = getattr(factory, 'supports', None)
  if config.multi_task:
    factory.check_multi_task(resolved)
  if config.multi_task and supports is not None:
    # The algorithms the method does not apply to are trained by the baseline.
    applies = [t for t in tasks if supports(t, processed_spec(t.algorithm))]
    if not applies:
      raise ConfigError(f'method {config.method} applies to none of {", ".join(config.algorithms)} '
                        '(each would be trained by the baseline); use --method baseline')
    tasks = applies
  if check is not None:
    for task in tasks:
      check(task, processed_spec(task.algorithm))
