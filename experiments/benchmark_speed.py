"""Training throughput: our trainer vs dm-clrs's `BaselineModel`, same batches.

Both train the same configuration (algorithm, processor, hidden size, batch
size, n = 16 by default) on IDENTICAL batches (ours, converted to a dm-clrs
`Feedback`), after compilation; we report samples/s of each and the ratio.
Optionally also a Hint-ReLIC step, its twins alone, and per-device throughput.

    python -m experiments.benchmark_speed --algorithms insertion_sort bfs dfs
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Optional

import numpy as np


# The default list: one algorithm of each CLRS family (nar.catalogue.FAMILIES).
ONE_PER_FAMILY = ('insertion_sort', 'binary_search', 'find_maximum_subarray_kadane',
                  'activity_selector', 'lcs_length', 'bfs', 'kmp_matcher', 'graham_scan')


def _feedback(batch, spec):
  import clrs
  from clrs._src import probing

  def dp(name, x):
    _, loc, typ = spec[name]
    return probing.DataPoint(name=name, location=loc, type_=typ, data=np.asarray(x, np.float32))
  return clrs.Feedback(
      clrs.Features(tuple(dp(k, v) for k, v in batch.inputs.items()),
                    tuple(dp(k, v) for k, v in batch.hints.items()), batch.lengths),
      tuple(dp(k, v) for k, v in batch.outputs.items()))


def _time(fn, batches, repeats: int) -> float:
  """Seconds per call, after one warm-up call per distinct batch shape."""
  for b in batches:
    fn(b)
  t0 = time.perf_counter()
  for _ in range(repeats):
    for b in batches:
      fn(b)
  return (time.perf_counter() - t0) / (repeats * len(batches))


def _time_rounds(steppers: dict, repeats: int) -> dict:
  """Seconds per call of each stepper, round by round: `repeats` rounds, each
  timing every stepper once over its batches, in turn. Drift of the machine
  (other tenants, clock) then reaches all of them alike, so the ratio of two in
  the same round is steadier than the ratio of two timed one after the other.

  Args:
    steppers: name -> (fn, batches).
  Returns:
    name -> list of `repeats` seconds per call.
  """
  for fn, batches in steppers.values():
    for b in batches:
      fn(b)
  out = {name: [] for name in steppers}
  for _ in range(repeats):
    for name, (fn, batches) in steppers.items():
      t0 = time.perf_counter()
      for b in batches:
        fn(b)
      out[name].append((time.perf_counter() - t0) / len(batches))
  return out


def bench_algorithm(algorithm: str, *, hidden: int, batch_size: int, size: int, num_batches: int,
                    repeats: int, processor: str, with_relic: bool,
                    reference: bool = True, relic_pairs: Optional[int] = None,
                    precision: str = 'float32', remat: str = 'full',
                    length_groups: int = 0) -> dict:
  import jax
  from nar.batching import pad_samples
  from nar.config import TrainConfig
  from nar.data import make_train_samples
  from nar.model import resolve_length_groups
  from nar.sample import processed_spec

  spec = processed_spec(algorithm)
  config = TrainConfig(algorithm=algorithm, hidden=hidden, batch_size=batch_size,
                       processor=processor, train_sizes=(size,), precision=precision,
                       remat=remat, length_groups=length_groups,
                       **({'relic_pairs': relic_pairs} if relic_pairs else {})).validate()
  # Identical batches for both: fixed n, time padded to the longest of them all.
  sample_sets = [make_train_samples(algorithm, 0, k, batch_size, (size,))
                 for k in range(num_batches)]
  t_max = max(s.length for ss in sample_sets for s in ss)
  batches = [pad_samples(ss, spec, num_steps=t_max) for ss in sample_sets]

  n_dev = len(jax.devices())
  row = {'algorithm': algorithm, 'hidden': hidden, 'batch': batch_size, 'n': size,
         'T': t_max, 'processor': processor, 'devices': n_dev,
         'device_kind': jax.devices()[0].device_kind, 'precision': precision,
         'remat': remat, 'length_groups': length_groups,
         'length_groups_used': resolve_length_groups(
             length_groups, len({s.length for ss in sample_sets for s in ss}) > 1,
             jax.default_backend()),
         'T_mean': float(np.mean([s.length for ss in sample_sets for s in ss])),
         'relic_pairs': config.relic_pairs}
  if reference:
    rounds = _time_rounds({'ours': _our_stepper(spec, config, batches),
                           'dm_clrs': _reference_stepper(spec, config, batches)}, repeats)
    ours_s, ref_s = float(np.median(rounds['ours'])), float(np.median(rounds['dm_clrs']))
    ratios = [r / o for o, r in zip(rounds['ours'], rounds['dm_clrs'])]
    row.update({'ours_samples_per_s': batch_size / ours_s,
                'ours_per_device_samples_per_s': batch_size / ours_s / n_dev,
                'dm_clrs_samples_per_s': batch_size / ref_s,
                'speedup': float(np.median(ratios)),
                'speedup_rounds': ratios})
  else:                 # --no-reference (with --relic: our baseline step as its reference)
    ours_s = _time(*_our_stepper(spec, config, batches), repeats)
    row.update({'ours_samples_per_s': batch_size / ours_s,
                'ours_per_device_samples_per_s': batch_size / ours_s / n_dev})
  if with_relic:
    row.update(_bench_relic(algorithm, config, spec, sample_sets, repeats))
  return row


class _OneDeviceJax:
  """The `jax` module as dm-clrs's baselines module sees it on a machine with
  several local devices: one device, the first. dm-clrs 2.0.3's BaselineModel
  pmaps over every local device whenever there are several, through
  `jax.device_put_replicated`, which JAX 0.10 removed: as it stands it cannot
  even initialise there. With this view it runs as on a one-device machine
  (jit on the default device), the reference a dm-clrs user gets."""

  def __init__(self, module):
    self._module = module

  def __getattr__(self, name):
    return getattr(self._module, name)

  def local_device_count(self) -> int:
    return 1

  def local_devices(self, *args, **kwargs):
    return self._module.local_devices(*args, **kwargs)[:1]


def _dm_clrs_baselines():
  """dm-clrs's baselines module, set to one device where this process has several."""
  import jax
  from clrs._src import baselines
  if jax.local_device_count() > 1 and not isinstance(baselines.jax, _OneDeviceJax):
    baselines.jax = _OneDeviceJax(jax)
  return baselines


def _reference_stepper(spec, config, batches):
  """(one training step of dm-clrs's BaselineModel, its inputs for `batches`)."""
  import jax
  import clrs
  baselines = _dm_clrs_baselines()
  feedbacks = [_feedback(b, spec) for b in batches]
  factory = clrs.get_processor_factory(config.processor, use_ln=True, nb_triplet_fts=8)
  ref = baselines.BaselineModel(
      spec, feedbacks[0], factory, hidden_dim=config.hidden, encode_hints=True,
      decode_hints=True, encoder_init='xavier_on_scalars', learning_rate=1e-3,
      grad_clip_max_norm=1.0, hint_repred_mode='soft', hint_teacher_forcing=0.0,
      use_lstm=False, dropout_prob=0.0)
  ref.init(feedbacks[0].features, 42)
  key = jax.random.PRNGKey(0)

  def ref_step(fb):
    return float(ref.feedback(key, fb))
  return ref_step, feedbacks


def _our_stepper(spec, config, batches):
  """(one training step of our baseline, its inputs for the same `batches`)."""
  import jax
  from nar import methods
  from nar import run_model as T
  method = methods.get(config, spec)
  net = T.build_network(config, spec, batches[0])
  optimizer = T.make_optimizer(config)
  key = jax.random.PRNGKey(0)
  params = method.init(net, key, batches[0])
  placement = T.Placement.create(config.batch_size)
  # Placed as the step returns them: otherwise the second call compiles again.
  state = placement.replicate([params, optimizer.init(params)])
  update = T.make_update(method.loss_fn(net), optimizer, placement)
  placed = [placement.batch(b) for b in batches]

  def our_step(b):
    state[0], state[1], loss, _, _ = update(state[0], state[1], key, b)
    return float(loss)
  return our_step, placed


def _plan_before(probe: dict):
  """The padding plan as it was before 2026-12 (commit 8093017): per training size
  the probe's nodes and bucketed longest trajectory, and a batch longer than
  its size's shape padded to its own (bucketed) shape, a program of its own."""
  from nar.batching import bucket, pad_samples
  shapes = {size: (max(x.num_nodes for x in ss), bucket(max(x.length for x in ss), 2))
            for size, ss in probe.items()}

  def pad(samples, spec, size):
    n, t = shapes[size]
    n = None if max(x.num_nodes for x in samples) > n else n
    t = None if max(x.length for x in samples) > t else t
    return pad_samples(samples, spec, num_nodes=n, num_steps=t)
  return pad


def bench_trainer_shapes(algorithm: str, *, hidden: int, batch_size: int, cycles: int,
                         repeats: int, processor: str, seed: int = 0,
                         train_sizes: Optional[tuple] = None) -> dict:
  """The training step as `nar train` runs it, before and now: the first `cycles`
  cycles of training sizes of a run (its batches, every size), padded by the
  padding plan of before (`_plan_before`, plain jit) and of now (the run's
  plan, the step through `nar.compilation.Precompiled` as the trainer calls
  it), timed in alternating rounds after every program has compiled. Same
  samples, same parameters: only the padded shapes and the call path differ.

  Returns:
    A row: samples/s over those steps before and now (medians over the rounds),
    their ratio, and the distinct padded shapes (programs) of each.
  """
  import jax
  from nar import data as data_lib
  from nar import methods
  from nar import run_model as T
  from nar.compilation import Precompiler
  from nar.config import TrainConfig
  from nar.sample import processed_spec

  spec = processed_spec(algorithm)
  config = TrainConfig(algorithm=algorithm, hidden=hidden, batch_size=batch_size,
                       processor=processor, seed=seed,
                       **({'train_sizes': train_sizes} if train_sizes else {})).validate()
  stream = data_lib.TrainStream(algorithm, seed, batch_size, config.train_sizes)
  before = _plan_before(stream.probe)
  steps = cycles * len(data_lib.train_sizes(algorithm, config.train_sizes))
  sizes = [data_lib.size_of_step(algorithm, k, config.train_sizes) for k in range(steps)]
  samples = [data_lib.make_train_samples(algorithm, seed, k, batch_size, config.train_sizes)
             for k in range(steps)]
  batches = {'before': [before(ss, spec, n) for ss, n in zip(samples, sizes)],
             'now': [stream.plan.pad(ss, spec, n) for ss, n in zip(samples, sizes)]}
  method = methods.get(config, spec)
  net = T.build_network(config, spec, batches['now'][0])
  optimizer = T.make_optimizer(config)
  key = jax.random.PRNGKey(0)
  params = jax.device_get(method.init(net, key, batches['now'][0]))
  placement = T.Placement.create(batch_size)
  precompiler = Precompiler()
  steppers, shapes = {}, {}
  for name, bs in batches.items():
    update = T.make_update(method.loss_fn(net), optimizer, placement)
    if name == 'now':
      update = precompiler.wrap(update)
    state = placement.replicate([params, optimizer.init(params)])
    placed = [placement.batch(b) for b in bs]
    shapes[name] = sorted({(b.num_nodes, b.num_steps) for b in bs})

    def step(b, update=update, state=state):
      state[0], state[1], loss, _, _ = update(state[0], state[1], key, b)
      return float(loss)
    steppers[name] = (step, placed)
  rounds = _time_rounds(steppers, repeats)
  precompiler.close()
  before_s, now_s = float(np.median(rounds['before'])), float(np.median(rounds['now']))
  return {'algorithm': algorithm, 'hidden': hidden, 'batch': batch_size, 'steps': steps,
          'before_samples_per_s': batch_size / before_s, 'now_samples_per_s': batch_size / now_s,
          'now_over_before': before_s / now_s,
          'rounds_now_over_before': [b / n for b, n in zip(rounds['before'], rounds['now'])],
          'before_shapes': shapes['before'], 'now_shapes': shapes['now']}


def _relic_update(cfg, spec, sample_sets, placement):
  """A jitted Hint-ReLIC training step of `cfg` and its placed items."""
  import jax
  from nar import methods
  from nar import run_model as T
  method = methods.get(cfg, spec)
  # Padded as in training at this size (the padding plans' shapes).
  size = cfg.train_sizes[0]
  items = [method.make_item(ss, k, size) for k, ss in enumerate(sample_sets)]
  net = T.build_network(cfg, spec, items[0][0])
  optimizer = T.make_optimizer(cfg)
  key = jax.random.PRNGKey(0)
  params = jax.device_get(method.init(net, key, items[0][0]))  # host copy: steps donate
  state = placement.replicate([params, optimizer.init(params)])
  update = T.make_update(method.loss_fn(net), optimizer, placement)

  def step(p):
    state[0], state[1], loss, _, _ = update(state[0], state[1], key, *p)
    return float(loss)
  return method, step, [method.place(it, placement) for it in items]


def _bench_relic(algorithm, config, spec, sample_sets, repeats) -> dict:
  import jax
  """Cost of Hint-ReLIC steps against a baseline step on the same originals,
  all padded as in training (the padding plans): the rollout twins (and the
  twins alone, no contrast), and the one-step twins (the twin side from one
  processor step per valid pair; the twins not supervised, relic_beta = 0)."""
  import dataclasses
  from nar import run_model as T
  from nar.methods import Baseline
  placement = T.Placement.create(config.batch_size)
  baseline = Baseline(config, spec)
  originals = [(placement.batch(baseline.stream.plan.pad(ss, spec, config.train_sizes[0])),)
               for ss in sample_sets]
  net = T.build_network(config, spec, originals[0][0])
  optimizer = T.make_optimizer(config)
  params = baseline.init(net, jax.random.PRNGKey(0), originals[0][0])
  bstate = placement.replicate([params, optimizer.init(params)])
  bupdate = T.make_update(baseline.loss_fn(net), optimizer, placement)

  def baseline_step(p):
    bstate[0], bstate[1], loss, _, _ = bupdate(bstate[0], bstate[1], jax.random.PRNGKey(0), *p)
    return float(loss)
  base_s = _time(baseline_step, originals, repeats)
  rollout = dataclasses.replace(config, method='hint_relic', relic_twin='rollout').validate()
  relic, relic_step, placed = _relic_update(rollout, spec, sample_sets, placement)
  relic_s = _time(relic_step, placed, repeats)
  del placed
  # The twins alone: the same two forward/backward passes, no pairing, no contrast.
  _, twins_step, twins_placed = _relic_update(
      dataclasses.replace(rollout, method='twins_only'), spec, sample_sets, placement)
  twins_s = _time(twins_step, twins_placed, repeats)
  one_step = dataclasses.replace(config, method='hint_relic', relic_twin='step',
                                 relic_beta=0.0).validate()
  step_method, one_step_step, step_placed = _relic_update(one_step, spec, sample_sets, placement)
  step_s = _time(one_step_step, step_placed, repeats)
  t0 = time.perf_counter()
  for k, ss in enumerate(sample_sets):
    relic.make_item(ss, k, config.train_sizes[0])
  aug_s = (time.perf_counter() - t0) / len(sample_sets)
  bs = config.batch_size
  return {'baseline_planned_samples_per_s': bs / base_s,
          'relic_samples_per_s': bs / relic_s, 'twins_only_samples_per_s': bs / twins_s,
          'relic_overhead_vs_twins': relic_s / twins_s - 1.0,
          'relic_one_step_samples_per_s': bs / step_s,
          'relic_step_vs_baseline_step': relic_s / base_s,
          'one_step_relic_vs_baseline_step': step_s / base_s,
          'augmentation_samples_per_s': bs / aug_s}


def peak_flops_per_s(n: int = 2048, repeats: int = 5) -> float:
  """The machine's reference peak, measured: a float32 n x n matmul through XLA."""
  import jax
  import jax.numpy as jnp
  a = jnp.ones((n, n), jnp.float32)
  b = jnp.ones((n, n), jnp.float32)
  mm = jax.jit(lambda x, y: x @ y)
  s = _time(lambda _: jax.block_until_ready(mm(a, b)), [None], repeats)
  return 2.0 * n ** 3 / s


def bench_roofline(algorithm: str, *, hidden: int, batch_size: int, size: int,
                   num_batches: int, repeats: int, processor: str,
                   peak: Optional[float] = None, remat: str = 'full',
                   length_groups: int = 1) -> dict:
  """Where a baseline training step's time goes: FLOPs counted from the jaxpr
  (`experiments.flops`, scan bodies times their length) for the forward pass,
  forward + backward and the whole update; the time of each (jitted alone, same
  batches), so backward = grad - forward and optimizer = update - grad; the
  host-side sampling and padding of a batch; achieved FLOP/s against `peak`."""
  import jax
  from experiments import flops
  from nar import run_model as T
  from nar.config import TrainConfig
  from nar.methods import Baseline
  from nar.sample import processed_spec

  spec = processed_spec(algorithm)
  config = TrainConfig(algorithm=algorithm, hidden=hidden, batch_size=batch_size,
                       processor=processor, train_sizes=(size,), remat=remat,
                       length_groups=length_groups).validate()
  method = Baseline(config, spec)
  batches = [method.batch(k) for k in range(num_batches)]
  t0 = time.perf_counter()
  for k in range(num_batches, 2 * num_batches):
    method.batch(k)
  host_s = (time.perf_counter() - t0) / num_batches
  key = jax.random.PRNGKey(0)
  net = T.build_network(config, spec, batches[0])
  params = method.init(net, key, batches[0])
  loss_fn = method.loss_fn(net)
  scalar = lambda p, b: loss_fn(p, key, b)[0]          # noqa: E731
  optimizer = T.make_optimizer(config)
  placement = T.Placement.create(batch_size)
  placed = [placement.batch(b) for b in batches]
  state = placement.replicate([params, optimizer.init(params)])
  update = T.make_update(loss_fn, optimizer, placement)
  count_fwd = flops.count(scalar, params, batches[0])
  count_grad = flops.count(jax.value_and_grad(scalar), params, batches[0])
  count_update = flops.count(update, state[0], state[1], key, placed[0])
  fwd = jax.jit(scalar)
  grad = jax.jit(jax.value_and_grad(scalar))
  fwd_s = _time(lambda b: jax.block_until_ready(fwd(state[0], b)), placed, repeats)
  grad_s = _time(lambda b: jax.block_until_ready(grad(state[0], b)), placed, repeats)

  def step(b):
    state[0], state[1], loss, _, _ = update(state[0], state[1], key, b)
    return float(loss)
  update_s = _time(step, placed, repeats)
  peak = peak or peak_flops_per_s()
  phases = {'forward': (fwd_s, count_fwd.total),
            'backward': (grad_s - fwd_s, count_grad.total - count_fwd.total),
            'optimizer': (update_s - grad_s, count_update.total - count_grad.total),
            'host data': (host_s, 0.0)}
  return {'algorithm': algorithm, 'T': batches[0].num_steps, 'hidden': hidden,
          'batch': batch_size, 'n': size, 'device_kind': jax.devices()[0].device_kind,
          'remat': remat, 'length_groups': length_groups, 'peak_flops_per_s': peak,
          'step_flops': count_update.total,
          'step_matmul_flops': count_update.matmul, 'step_s': update_s,
          'achieved_flops_per_s': count_update.total / update_s,
          'fraction_of_peak': count_update.total / update_s / peak,
          'phases': {k: {'s': s_, 'flops': f, 'fraction_of_step': s_ / update_s,
                         'fraction_of_peak': (f / s_ / peak) if s_ > 0 and f else None}
                     for k, (s_, f) in phases.items()}}


def _print_roofline(rows) -> None:
  print()
  print(f"measured peak (float32 matmul): {rows[0]['peak_flops_per_s'] / 1e9:.1f} GFLOP/s")
  print('| algorithm | T | GFLOP per step (matmul share) | step ms | achieved GFLOP/s | '
        'of peak | forward | backward | optimizer | host data (prefetched: overlaps the step in training) |')
  print('|---|---|---|---|---|---|---|---|---|---|')
  for r in rows:
    ph = r['phases']

    def cell(name):
      p = ph[name]
      peak = f", {100 * p['fraction_of_peak']:.0f}% of peak" if p['fraction_of_peak'] else ''
      return f"{1000 * p['s']:.1f} ms ({100 * p['fraction_of_step']:.0f}%{peak})"
    print(f"| {r['algorithm']} | {r['T']} | {r['step_flops'] / 1e9:.2f} "
          f"({100 * r['step_matmul_flops'] / r['step_flops']:.0f}%) | {1000 * r['step_s']:.1f} | "
          f"{r['achieved_flops_per_s'] / 1e9:.1f} | {100 * r['fraction_of_peak']:.1f}% | "
          f"{cell('forward')} | {cell('backward')} | {cell('optimizer')} | {cell('host data')} |")


def bench_evaluation(algorithm: str, *, hidden: int, batch_size: int, size: int, repeats: int,
                     processor: str) -> dict:
  """Evaluation throughput at test size `size`: our jitted predict (the one
  `nar evaluate` runs: a rollout on predicted hints, hard outputs) against
  dm-clrs's `BaselineModel.predict`, same parameters, same batch of test samples
  (the test split's first `batch_size`), after compilation."""
  import jax
  import clrs
  from nar import data as data_lib
  from nar import run_model as T
  from nar.config import TrainConfig
  from nar.sample import processed_spec

  spec = processed_spec(algorithm)
  split = data_lib.load_split(algorithm, 'test', size=size, num_samples=batch_size)
  chunk, _ = next(data_lib.iterate_chunks(split, batch_size))
  feedback = _feedback(chunk, spec)
  factory = clrs.get_processor_factory(processor, use_ln=True, nb_triplet_fts=8)
  ref = _dm_clrs_baselines().BaselineModel(
      spec, feedback, factory, hidden_dim=hidden, encode_hints=True, decode_hints=True,
      encoder_init='xavier_on_scalars', use_lstm=False, dropout_prob=0.0)
  ref.init(feedback.features, 42)
  key = jax.random.PRNGKey(0)

  def ref_predict(fb):
    return jax.block_until_ready(ref.predict(key, fb.features))
  ref_s = _time(ref_predict, [feedback], repeats)
  config = TrainConfig(algorithm=algorithm, hidden=hidden, processor=processor).validate()
  net = T.build_network(config, spec, chunk)
  predict = T.make_predict(net, spec)
  params = ref.params              # the same tree (tests/test_model.py), the same values

  def our_predict(b):
    return jax.block_until_ready(predict(params, b))
  ours_s = _time(our_predict, [chunk], repeats)
  return {'algorithm': algorithm, 'n': size, 'T': chunk.num_steps, 'hidden': hidden,
          'batch': batch_size, 'device_kind': jax.devices()[0].device_kind,
          'dm_clrs_eval_samples_per_s': batch_size / ref_s,
          'ours_eval_samples_per_s': batch_size / ours_s, 'eval_speedup': ref_s / ours_s}


def bench_multi_task(algorithms, *, hidden: int, batch_size: int, size: int, num_batches: int,
                     repeats: int, processor: str) -> list[dict]:
  """Per algorithm: our single-task baseline step against the same algorithm's
  step inside a multi-task network of all `algorithms` (shared processor, the
  other algorithms' encoders/decoders and Adam moments frozen), identical
  batches; then the interleaved cycle (one step of each, as `nar train` runs it)
  against the sum of the single-task steps."""
  import jax
  from nar import run_model as T
  from nar.batching import pad_samples
  from nar.config import TrainConfig
  from nar.data import make_train_samples
  from nar.methods import Baseline
  from nar.model import bind_algorithm
  from nar.sample import processed_spec

  key = jax.random.PRNGKey(0)
  config = TrainConfig(algorithm=','.join(algorithms), hidden=hidden, batch_size=batch_size,
                       processor=processor, train_sizes=(size,)).validate()
  specs = [processed_spec(a) for a in algorithms]
  placement = T.Placement.create(batch_size)
  optimizer = T.make_optimizer(config)
  batches = []
  for a, spec in zip(algorithms, specs):
    sample_sets = [make_train_samples(a, 0, k, batch_size, (size,)) for k in range(num_batches)]
    t_max = max(s.length for ss in sample_sets for s in ss)
    batches.append([pad_samples(ss, spec, num_steps=t_max) for ss in sample_sets])
  placed = [[placement.batch(b) for b in bs] for bs in batches]

  def stepper(update, state):
    def step(b):
      state[0], state[1], loss, _, _ = update(state[0], state[1], key, b)
      return float(loss)
    return step

  # One method per algorithm (its own configuration), used alone and inside the shared network.
  tasks = [Baseline(TrainConfig(algorithm=a, hidden=hidden, batch_size=batch_size,
                                processor=processor, train_sizes=(size,)).validate(), spec)
           for a, spec in zip(algorithms, specs)]
  rows, singles = [], []
  for a, task, bs, pl in zip(algorithms, tasks, batches, placed):
    net = T.build_network(task.config, task.spec, bs[0])
    params = jax.device_get(task.init(net, key, bs[0]))
    update = T.make_update(task.loss_fn(net), optimizer, placement)
    singles.append(stepper(update, placement.replicate([params, optimizer.init(params)])))
    rows.append({'algorithm': a, 'T': bs[0].num_steps, 'hidden': hidden, 'batch': batch_size,
                 'n': size, 'device_kind': jax.devices()[0].device_kind,
                 'single_task_s': _time(singles[-1], pl, repeats)})
  net = T.build_network(config, specs, [bs[0] for bs in batches])
  params = jax.device_get(T.init_network(net, key, [bs[0] for bs in batches]))
  state = placement.replicate([params, optimizer.init(params)])
  multi = []
  for i, task in enumerate(tasks):
    update = T.make_update(task.loss_fn(bind_algorithm(net, i)), optimizer, placement,
                           algorithm_index=i)
    multi.append(stepper(update, state))
  for i, row in enumerate(rows):
    row['multi_task_s'] = _time(multi[i], placed[i], repeats)
    row['multi_vs_single'] = row['multi_task_s'] / row['single_task_s']
  # The interleaved cycle, every algorithm's batches in turn.
  cycle = [(i, b) for k in range(num_batches) for i, b in
           enumerate(pl[k] for pl in placed)]
  multi_cycle = _time(lambda ib: multi[ib[0]](ib[1]), cycle, repeats)
  single_cycle = _time(lambda ib: singles[ib[0]](ib[1]), cycle, repeats)
  rows.append({'algorithm': 'interleaved (' + '+'.join(algorithms) + ')', 'T': None,
               'hidden': hidden, 'batch': batch_size, 'n': size,
               'device_kind': jax.devices()[0].device_kind, 'single_task_s': single_cycle,
               'multi_task_s': multi_cycle, 'multi_vs_single': multi_cycle / single_cycle})
  return rows


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--algorithms', nargs='+', default=list(ONE_PER_FAMILY),
                 help='default: one algorithm per CLRS family')
  p.add_argument('--hidden', type=int, default=128)
  p.add_argument('--batch-size', type=int, default=32)
  p.add_argument('--size', type=int, default=16)
  p.add_argument('--batches', type=int, default=2)
  p.add_argument('--repeats', type=int, default=5,
                 help='timed rounds (against dm-clrs: each round times both, in turn)')
  p.add_argument('--processor', default='triplet_gmpnn')
  p.add_argument('--relic', action='store_true',
                 help='also time Hint-ReLIC steps (rollout and one-step twins)')
  p.add_argument('--relic-pairs', type=int, default=None,
                 help='with --relic: valid step pairs per twin (default: the config default)')
  p.add_argument('--no-reference', action='store_true',
                 help="skip dm-clrs's BaselineModel (with --relic: Hint-ReLIC against our baseline only)")
  p.add_argument('--devices', type=int, default=None,
                 help='force N host (CPU) devices (sets XLA_FLAGS before JAX starts)')
  p.add_argument('--precision', default='float32', choices=['float32', 'bfloat16'],
                 help="our trainer's compute precision (dm-clrs's reference is float32 only)")
  from nar.config import REMAT_MODES
  p.add_argument('--remat', default='full', choices=list(REMAT_MODES),
                 help="our step's backward of the time loop: recompute each step ('full', the "
                      "training default) or store its activations ('none')")
  p.add_argument('--length-groups', type=int, default=None,
                 help="our step: groups of samples of similar trajectory length, each skipping "
                      "the steps past its longest sample (the training setting length_groups; "
                      "default: the training default 0, automatic; with --roofline 1, since "
                      "the FLOPs are counted as if every step ran)")
  p.add_argument('--roofline', action='store_true',
                 help='instead: FLOPs of a baseline step (counted from the jaxpr), its time per '
                      'phase and the fraction of the measured matmul peak')
  p.add_argument('--eval-size', type=int, default=None,
                 help="instead: evaluation throughput at this test size (e.g. 64) against "
                      "dm-clrs's BaselineModel.predict, --batch-size test samples")
  p.add_argument('--multi-task', action='store_true',
                 help='instead: each algorithm\'s step in a multi-task network of all the '
                      '--algorithms against its single-task step (same batches)')
  p.add_argument('--trainer-shapes', action='store_true',
                 help="instead: the training step as `nar train` runs it, before and now: a "
                      "run's first --batches cycles of training sizes (every size), padded by "
                      "the padding plan of before 2026-12 and of now, alternating rounds")
  p.add_argument('--out', default=None, help='write the rows as JSON here')
  args = p.parse_args(argv)
  if args.devices:
    from nar.distributed import force_host_devices
    force_host_devices(os.environ, args.devices)
  import nar.clrs_import  # noqa: F401
  if args.roofline:
    peak = peak_flops_per_s()
    rows = [bench_roofline(a, hidden=args.hidden, batch_size=args.batch_size, size=args.size,
                           num_batches=args.batches, repeats=args.repeats,
                           processor=args.processor, peak=peak, remat=args.remat,
                           length_groups=args.length_groups or 1)
            for a in args.algorithms]
    _print_roofline(rows)
    _save(args.out, rows)
    return 0
  if args.eval_size:
    rows = []
    for a in args.algorithms:        # each row as it is measured: dm-clrs at n = 64 is slow
      rows.append(bench_evaluation(a, hidden=args.hidden, batch_size=args.batch_size,
                                   size=args.eval_size, repeats=args.repeats,
                                   processor=args.processor))
      print(json.dumps(rows[-1]), flush=True)
    print()
    print('| algorithm | n | T | dm-clrs predict samples/s | ours samples/s | speed-up |')
    print('|---|---|---|---|---|---|')
    for r in rows:
      print(f"| {r['algorithm']} | {r['n']} | {r['T']} | {r['dm_clrs_eval_samples_per_s']:.1f} | "
            f"{r['ours_eval_samples_per_s']:.1f} | {r['eval_speedup']:.2f}x |")
    _save(args.out, rows)
    return 0
  if args.trainer_shapes:
    rows = []
    for a in args.algorithms:
      rows.append(bench_trainer_shapes(a, hidden=args.hidden, batch_size=args.batch_size,
                                       cycles=args.batches, repeats=args.repeats,
                                       processor=args.processor))
      print(json.dumps(rows[-1]), flush=True)
    _print_trainer_shapes(rows)
    _save(args.out, rows)
    return 0
  if args.multi_task:
    rows = bench_multi_task(args.algorithms, hidden=args.hidden, batch_size=args.batch_size,
                            size=args.size, num_batches=args.batches, repeats=args.repeats,
                            processor=args.processor)
    _print_multi_task(rows)
    _save(args.out, rows)
    return 0
  rows = []
  for alg in args.algorithms:
    row = bench_algorithm(alg, hidden=args.hidden, batch_size=args.batch_size, size=args.size,
                          num_batches=args.batches, repeats=args.repeats,
                          processor=args.processor, with_relic=args.relic,
                          reference=not args.no_reference, relic_pairs=args.relic_pairs,
                          precision=args.precision, remat=args.remat,
                          length_groups=args.length_groups or 0)
    rows.append(row)
    print(json.dumps(row), flush=True)
  if not (args.relic and args.no_reference):
    _print_reference(rows)
  if args.relic:
    _print_relic(rows)
  _save(args.out, rows)
  return 0


def _save(path: Optional[str], rows: list) -> None:
  """The rows and the command line, as JSON (`--out`)."""
  if path:
    with open(path, 'w') as f:
      json.dump({'rows': rows, 'argv': sys.argv}, f, indent=1)


def _print_reference(rows) -> None:
  print()
  print('| algorithm | T (mean) | length groups | devices | dm-clrs samples/s | '
        'ours samples/s (total) | ours per device | speed-up (median of rounds) | rounds min-max |')
  print('|---|---|---|---|---|---|---|---|---|')
  for r in rows:
    ref = (f"{r['dm_clrs_samples_per_s']:.1f}" if 'dm_clrs_samples_per_s' in r
           else 'not measured (--no-reference)')
    speedup = f"{r['speedup']:.2f}x" if 'speedup' in r else ''
    rounds = r.get('speedup_rounds')
    spread = f"{min(rounds):.2f}-{max(rounds):.2f}x" if rounds else ''
    print(f"| {r['algorithm']} | {r['T']} ({r.get('T_mean', r['T']):.1f}) | "
          f"{r.get('length_groups_used', 1)} | {r['devices']} | {ref} | "
          f"{r['ours_samples_per_s']:.1f} | {r['ours_per_device_samples_per_s']:.1f} | "
          f"{speedup} | {spread} |")


def _print_trainer_shapes(rows) -> None:
  print()
  print('| algorithm | hidden | steps | before samples/s | now samples/s | now / before '
        '(rounds min-max) | programs before | programs now |')
  print('|---|---|---|---|---|---|---|---|')
  for r in rows:
    ratios = r['rounds_now_over_before']
    print(f"| {r['algorithm']} | {r['hidden']} | {r['steps']} | {r['before_samples_per_s']:.1f} | "
          f"{r['now_samples_per_s']:.1f} | {r['now_over_before']:.3f} ({min(ratios):.3f}-"
          f"{max(ratios):.3f}) | {len(r['before_shapes'])} | {len(r['now_shapes'])} |")


def _print_multi_task(rows) -> None:
  print()
  print('| algorithm | T | single-task step ms | multi-task step ms | multi / single |')
  print('|---|---|---|---|---|')
  for r in rows:
    print(f"| {r['algorithm']} | {r['T'] if r['T'] is not None else ''} | "
          f"{1000 * r['single_task_s']:.1f} | {1000 * r['multi_task_s']:.1f} | "
          f"{r['multi_vs_single']:.2f}x |")


def _print_relic(rows) -> None:
  print()
  print('| algorithm | baseline samples/s | twins-only samples/s | Hint-ReLIC rollout samples/s | '
        'rollout step / baseline step | loss + pairing over twins | '
        'Hint-ReLIC one-step samples/s | one-step / baseline step | augmentation samples/s |')
  print('|---|---|---|---|---|---|---|---|---|')
  for r in rows:
    print(f"| {r['algorithm']} | {r['baseline_planned_samples_per_s']:.1f} | "
          f"{r['twins_only_samples_per_s']:.1f} | {r['relic_samples_per_s']:.1f} | "
          f"{r['relic_step_vs_baseline_step']:.2f}x | {100 * r['relic_overhead_vs_twins']:+.0f}% | "
          f"{r['relic_one_step_samples_per_s']:.1f} | "
          f"{r['one_step_relic_vs_baseline_step']:.2f}x | "
          f"{r['augmentation_samples_per_s']:.0f} |")


if __name__ == '__main__':
  sys.exit(main())
