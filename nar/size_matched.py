"""The size-matched control of Hint-ReLIC's twins: the baseline trained on the
mix of sizes the twins have.

Each step holds the baseline's batch and, for each of its samples, a fresh
sample from the algorithm's own sampler at the size of the twin Hint-ReLIC
would build from it (the same augmentation, the same random stream, so the
sizes are exactly the twins' of that step). The loss supervises both batches
as the supervised variant supervises originals and twins:

    L = L_sup(x) + L_sup(x_fresh)

It separates "the model saw larger inputs" from "the model saw causally
equivalent inputs": fresh samples at the twins' sizes carry no relation to the
originals (docs/method.md).
"""

from __future__ import annotations

import functools

import numpy as np

from nar import data as data_lib
from nar.batching import Batch
from nar.config import TrainConfig
from nar.losses import supervised_loss
from nar.methods import Baseline
from nar.sample import draw_args, protocol_kwargs, sample_from_args, sampler_for


def fresh_samples(algorithm: str, seed: int, step: int, sizes: list) -> list:
  """Training-distribution samples at the given sizes (one each), a pure
  function of (seed, step): the training protocol's sampler arguments."""
  stream = int(np.random.SeedSequence([seed, step, 0x512E]).generate_state(1)[0] % (2 ** 31 - 1))
  sampler = sampler_for(algorithm, stream)
  pos_rng = np.random.RandomState(stream ^ 0x5EED)
  kwargs = protocol_kwargs(algorithm, 'train')
  return [sample_from_args(algorithm, draw_args(sampler, n, kwargs), pos_rng=pos_rng)
          for n in sizes]


class SizeMatched(Baseline):
  """Training method `size_matched`: (originals, fresh samples at the twins'
  sizes), each batch padded to its own planned shape."""

  supports_multi_task = False

  @classmethod
  def check(cls, config: TrainConfig, spec: dict) -> None:
    """The twins' sizes come from the algorithm's augmentation rule: Hint-ReLIC's
    checks of its settings group, which this method reads (`nar.preflight`
    answers the same before anything loads)."""
    from nar.hint_relic import HintReLIC
    HintReLIC.check(config, spec)

  def __init__(self, config: TrainConfig, spec: dict, param_prefix: str = ''):
    import augment
    super().__init__(config, spec, param_prefix)
    self.augmenter = augment.get(config.algorithm)

  @functools.cached_property
  def fresh_plan(self) -> data_lib.PaddingPlan:
    """Padded shapes of the fresh batches: probed on fresh samples at the sizes of
    the twins of the stream's probe (the shapes of the twins' own plan)."""
    rng = np.random.default_rng(data_lib.PROBE_SEED)
    return data_lib.PaddingPlan.probe({
        size: fresh_samples(self.config.algorithm, data_lib.PROBE_SEED, size,
                            [self.augmenter(x, rng).twin.num_nodes for x in ss])
        for size, ss in self.stream.probe.items()})

  def twin_sizes(self, samples: list, step: int) -> list:
    """The sizes of the twins Hint-ReLIC builds from `samples` at `step` (its
    random stream, `HintReLIC.make_item`)."""
    rng = np.random.default_rng([self.config.seed, step, 0xA06])
    return [self.augmenter(s, rng).twin.num_nodes
            for s in samples for _ in range(self.config.augmentations)]

  def batch(self, step: int):
    cfg = self.config
    size = data_lib.size_of_step(cfg.algorithm, step, cfg.train_sizes)
    samples = data_lib.make_train_samples(cfg.algorithm, cfg.seed, step, cfg.batch_size,
                                          cfg.train_sizes)
    fresh = fresh_samples(cfg.algorithm, cfg.seed, step, self.twin_sizes(samples, step))
    return (self.stream.plan.pad(samples, self.spec, size),
            self.fresh_plan.pad(fresh, self.spec, size))

  def place(self, item, placement):
    return tuple(placement.batch(b) for b in item)

  def loss_fn(self, net):
    spec = self.spec

    def loss(params, rng, batch: Batch, fresh: Batch):
      def sup(b):
        return supervised_loss(spec, net.apply(params, rng, b.inputs, b.hints, b.lengths,
                                               b.node_mask, is_training=True), b)
      sup_x, terms = sup(batch)
      sup_fresh, _ = sup(fresh)
      return sup_x + sup_fresh, {**terms, 'sup_x': sup_x, 'sup_fresh': sup_fresh}
    return loss
