"""What a training step of each CLRS-30 algorithm costs in FLOPs, for the 30-algorithm
generalist (`nar train --algorithms all`, docs/multitask.md).

A multi-task step trains one algorithm (the algorithms take turns), so the
generalist's cost is the sum over the algorithms of their own steps. This counts
each baseline training step's FLOPs from its jaxpr (`experiments.flops`: scan
bodies times their length; tracing only, nothing is compiled) at every training
size of the protocol, on one batch of that size padded as the trainer pads it
(to the batch's own longest trajectory, bucketed).

    python -m experiments.generalist_cost --hidden 32 --batch-size 16      # cpu protocol
    python -m experiments.generalist_cost --hidden 128 --batch-size 32     # reference
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence


def step_flops(algorithm: str, hidden: int, batch_size: int, size: int, seed: int = 0) -> dict:
  """FLOPs of one baseline training step (loss, gradient; the optimizer's
  elementwise update is left out: it is not a function of the data) of
  `algorithm` on a batch of `batch_size` problems of `size` nodes.

  Returns:
    {'algorithm', 'size', 'T' (padded trajectory length), 'flops', 'matmul_flops'}.
  """
  import jax
  from experiments import flops
  from nar.batching import pad_samples
  from nar.config import TrainConfig
  from nar.data import make_train_samples, train_sizes
  from nar.losses import supervised_loss
  from nar.model import make_net, nb_dims_of, net_config_of
  from nar.sample import processed_spec

  spec = processed_spec(algorithm)
  size = train_sizes(algorithm, (size,))[0]        # string matchers: their own size
  batch = pad_samples(make_train_samples(algorithm, seed, 0, batch_size, (size,)), spec)
  config = TrainConfig(algorithm=algorithm, hidden=hidden, batch_size=batch_size,
                       length_groups=1).validate()
  net = make_net(spec, nb_dims_of(batch.inputs, batch.hints, batch.outputs),
                 net_config_of(config))
  key = jax.random.PRNGKey(0)
  params = jax.eval_shape(lambda: net.init(key, batch.inputs, batch.hints, batch.lengths,
                                           batch.node_mask, is_training=True))

  def loss(p, b):
    out = net.apply(p, key, b.inputs, b.hints, b.lengths, b.node_mask, is_training=True)
    return supervised_loss(spec, out, b)[0]
  count = flops.count(jax.value_and_grad(loss), params, batch)
  return {'algorithm': algorithm, 'size': size, 'T': batch.num_steps, 'flops': count.total,
          'matmul_flops': count.matmul}


def generalist_flops(algorithms: Sequence[str], hidden: int, batch_size: int,
                     sizes: Sequence[int]) -> list[dict]:
  """Per algorithm, its step's FLOPs averaged over the training sizes (each size
  is one step in `len(sizes)`: the trainer cycles through them)."""
  rows = []
  for algorithm in algorithms:
    per = [step_flops(algorithm, hidden, batch_size, s) for s in sizes]
    rows.append({'algorithm': algorithm, 'mean_flops': sum(r['flops'] for r in per) / len(per),
                 'per_size': per})
  return rows


def main(argv=None) -> int:
  from nar.catalogue import CLRS30_ALGORITHMS
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--algorithms', nargs='*', default=list(CLRS30_ALGORITHMS))
  p.add_argument('--hidden', type=int, default=32)
  p.add_argument('--batch-size', type=int, default=16)
  p.add_argument('--sizes', default='4,7,11,13,16')
  p.add_argument('--out', default=None, help='JSON file for the rows')
  args = p.parse_args(argv)
  sizes = [int(x) for x in args.sizes.split(',')]
  rows = generalist_flops(args.algorithms, args.hidden, args.batch_size, sizes)
  for r in rows:
    print(f"{r['algorithm']:<32} {r['mean_flops'] / 1e9:8.2f} GFLOP/step", flush=True)
  total = sum(r['mean_flops'] for r in rows)
  print(f"{'one step of each':<32} {total / 1e9:8.2f} GFLOP")
  if args.out:
    with open(args.out, 'w') as f:
      json.dump({'hidden': args.hidden, 'batch_size': args.batch_size, 'sizes': sizes,
                 'rows': rows}, f, indent=1)
  return 0


if __name__ == '__main__':
  sys.exit(main())
