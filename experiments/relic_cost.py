"""The cost of a Hint-ReLIC training step against a baseline step, by part.

    python -m experiments.relic_cost --algorithms find_maximum_subarray_kadane insertion_sort
    python -m experiments.relic_cost --algorithms dfs --measure      # also time them (quiet machine)

Counted work (`experiments.flops`: the jaxpr of `value_and_grad` of the loss,
scan bodies times their length) of one step of the same batch of originals:

- baseline: the rollout of the originals, forward and backward;
- Hint-ReLIC, the method as configured (default: the paper's objective, twins
  unsupervised, one processor step per valid pair from the original's state):
  - `supervised`: the gradient of the supervised loss alone (the rollout's
    forward and backward, plus the forward of everything the ReLIC terms add,
    which that gradient does not prune);
  - `relic forward` = `supervised` - baseline: the pair steps (original and twin
    side), critics, contrast and KL, forward;
  - `relic backward` = whole - `supervised`;
- processor steps: the rollout's (batch x trajectory length) and the pair
  steps' (pairs, each one step on each side).

With `--measure`, each step is jitted and timed (median of `--repeats` after
one warm call), and the ratio to the baseline timed in the same run printed;
where it exceeds the counted ratio, time goes to something the count does not
see (gathers, host work, memory traffic).
"""

from __future__ import annotations

import argparse
import statistics
import time

ALGORITHMS = ('find_maximum_subarray_kadane', 'insertion_sort', 'dfs')


def _setup(algorithm: str, method: str, hidden: int, batch_size: int, size: int,
           settings: dict):
  import jax
  from nar import data as data_lib
  from nar import methods
  from nar.config import TrainConfig
  from nar.run_model import build_network
  from nar.sample import processed_spec
  cfg = TrainConfig(algorithm=algorithm, method=method, hidden=hidden, batch_size=batch_size,
                    **(settings if method != 'baseline' else {})).validate().as_trained()
  spec = processed_spec(algorithm)
  method_obj = methods.get(cfg, spec)
  samples = data_lib.make_train_samples(algorithm, 0, 0, batch_size, [size])
  if method == 'baseline':
    item = (method_obj.stream.plan.pad(samples, spec, size),)
  else:
    item = method_obj.make_item(samples, step=0, size=size)
  net = build_network(cfg, spec, item[0])
  params = method_obj.init(net, jax.random.PRNGKey(0), item[0])
  item = jax.tree_util.tree_map(jax.numpy.asarray, item)
  return method_obj.loss_fn(net), params, item


def _grad_of(loss, term=None):
  """value_and_grad of the loss (term None) or of one of its returned terms."""
  import jax

  def objective(params, item):
    total, terms = loss(params, jax.random.PRNGKey(1), *item)
    return total if term is None else term(terms)
  return jax.jit(jax.value_and_grad(objective))


def _time(fn, params, item, repeats: int) -> float:
  import jax
  jax.block_until_ready(fn(params, item))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(params, item))
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def cost(algorithm: str, hidden: int = 64, batch_size: int = 32, size: int = 16,
         settings: dict | None = None, measure: bool = False, repeats: int = 5) -> dict:
  """Counted GFLOPs of each part (and seconds, with `measure`) of one step.

  Args:
    algorithm: a CLRS algorithm with an augmentation rule.
    hidden, batch_size, size: the step's width, batch and training size.
    settings: TrainConfig settings of the Hint-ReLIC side (default: its defaults).
    measure: also time the jitted steps.
  Returns:
    dict with `baseline`, `hint_relic`, `supervised`, `relic_forward`,
    `relic_backward` (GFLOPs), `rollout_steps`, `pair_steps`, and with
    `measure` `baseline_s`, `hint_relic_s`.
  """
  from experiments.flops import count
  settings = settings or {}
  base_loss, base_params, base_item = _setup(algorithm, 'baseline', hidden, batch_size, size,
                                             settings)
  relic_loss, relic_params, relic_item = _setup(algorithm, 'hint_relic', hidden, batch_size,
                                                size, settings)
  base_step = _grad_of(base_loss)
  whole_step = _grad_of(relic_loss)
  sup_step = _grad_of(relic_loss, lambda terms: terms['sup_x'])
  base = count(base_step, base_params, base_item).total / 1e9
  whole = count(whole_step, relic_params, relic_item).total / 1e9
  sup = count(sup_step, relic_params, relic_item).total / 1e9
  batch_x, pairs = relic_item[0], relic_item[2]
  out = {'baseline': base, 'hint_relic': whole, 'supervised': sup,
         'relic_forward': sup - base, 'relic_backward': whole - sup,
         'rollout_steps': int(batch_x.lengths.sum()), 'pair_steps': int(pairs.mask.sum()),
         'nodes': int(batch_x.num_nodes)}
  if measure:
    out['baseline_s'] = _time(base_step, base_params, base_item, repeats)
    out['hint_relic_s'] = _time(whole_step, relic_params, relic_item, repeats)
  return out


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--algorithms', nargs='+', default=list(ALGORITHMS))
  p.add_argument('--hidden', type=int, default=64)
  p.add_argument('--batch-size', type=int, default=32)
  p.add_argument('--size', type=int, default=16)
  p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                 help='a Hint-ReLIC setting, e.g. --set relic_pairs=2')
  p.add_argument('--measure', action='store_true', help='also time the steps (quiet machine)')
  p.add_argument('--repeats', type=int, default=5)
  args = p.parse_args(argv)
  from nar.overrides import parse_overrides
  settings = parse_overrides(args.set)
  print(f'hidden {args.hidden}, batch {args.batch_size}, n = {args.size}; GFLOP counted per '
        'step (value_and_grad)' + ('; seconds: median of the jitted step' if args.measure else ''))
  head = ('| algorithm | baseline | Hint-ReLIC | ratio | relic forward | relic backward | '
          'rollout steps | pair steps |')
  if args.measure:
    head += ' baseline s | Hint-ReLIC s | measured ratio |'
  print(head)
  print('|' + '---|' * (head.count('|') - 1))
  for algorithm in args.algorithms:
    c = cost(algorithm, args.hidden, args.batch_size, args.size, settings, args.measure,
             args.repeats)
    row = (f"| {algorithm} | {c['baseline']:.2f} | {c['hint_relic']:.2f} | "
           f"{c['hint_relic'] / c['baseline']:.2f}x | {c['relic_forward']:.2f} | "
           f"{c['relic_backward']:.2f} | {c['rollout_steps']} | {c['pair_steps']} |")
    if args.measure:
      row += (f" {c['baseline_s']:.3f} | {c['hint_relic_s']:.3f} | "
              f"{c['hint_relic_s'] / c['baseline_s']:.2f}x |")
    print(row, flush=True)


if __name__ == '__main__':
  main()
