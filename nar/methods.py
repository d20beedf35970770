"""Training methods: what a training batch holds and which loss it gets.

`baseline`: the CLRS supervised loss on fresh samples (dm-clrs examples/run.py).
`hint_relic`: see `nar.hint_relic`.
"""

from __future__ import annotations

from nar import data as data_lib
from nar.batching import Batch
from nar.config import TrainConfig
from nar.losses import supervised_loss


class Baseline:
  def __init__(self, config: TrainConfig, spec: dict):
    self.config = config
    self.spec = spec
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


def get(config: TrainConfig, spec: dict):
  if config.method == 'baseline':
    return Baseline(config, spec)
  from nar.hint_relic import ABLATIONS, HintReLIC
  if config.method in ABLATIONS:
    import dataclasses
    return HintReLIC(dataclasses.replace(config, **ABLATIONS[config.method]), spec)
  raise ValueError(f'unknown method {config.method}')
