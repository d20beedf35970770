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


class Method:
  """The interface a training method gives the trainer.

  The trainer calls, in order: `example_batch()` (to build the network),
  `init(net, key, example)` (parameters), `loss_fn(net)` (jitted with the
  optimizer), then per step `batch(step)` (host side, in a prefetch thread)
  and `place(item, placement)` (on the devices); the update is
  `loss_fn(net)(params, rng, *place(batch(step), placement))`.
  """

  def __init__(self, config: TrainConfig, spec: dict):
    self.config = config
    self.spec = spec

  @classmethod
  def check(cls, config: TrainConfig, spec: dict) -> None:
    """Refuses (ConfigError) a configuration this method cannot train, cheaply,
    before anything is written or sampled. Default: nothing to check."""

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
    """`(params, rng, *placed) -> (loss, dict of scalar terms)`."""
    raise NotImplementedError


class Baseline(Method):
  def __init__(self, config: TrainConfig, spec: dict):
    super().__init__(config, spec)
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
    config = dataclasses.replace(config, **entry.overrides)
  return entry.factory(), config


def get(config: TrainConfig, spec: dict) -> Method:
  """The method `config.method` names (see `nar.registry`), with the
  configuration values it fixes applied."""
  factory, config = _resolve(config)
  return factory(config, spec)


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
  if config.multi_task and factory is not Baseline:
    raise ConfigError(f'multi-task training (several algorithms) supports the baseline method '
                      f'only, not yet {config.method}; train one algorithm at a time with it')
  check = getattr(factory, 'check', None)
  if check is not None:
    for task in task_configs(resolved):
      check(task, processed_spec(task.algorithm))
