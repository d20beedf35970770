"""Scoring parameters on whole splits, and `nar evaluate`.

(Not the metric, `nar.evaluation`, nor the record of evaluations,
`nar.evaluations`.)

* the evaluation batch: `eval_batch_size` samples, fewer where that many would
  not fit in the free memory (`evaluation_batch_size`), and the shapes it cuts a
  split into (`evaluation_shapes`, what the predict programs are compiled for);
* `evaluate_split`: `clrs.evaluate`-equal scores of parameters on a split (the
  validation of `nar train`);
* `test_algorithms`: the test phase, shared by `nar train` (the test of the
  best checkpoint, at the configured test size) and `nar evaluate` (any size);
* `nar evaluate`'s own work on a saved run: `evaluate_run`,
  `evaluate_run_sizes` and `evaluate_invariance`.
"""

from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

import haiku as hk
import jax
import numpy as np

from nar import data as data_lib
from nar import storage
from nar.batching import Batch
from nar.config import MIN_SIZE, ConfigError, TrainConfig, load_config
from nar.errors import RunError
from nar.evaluation import ScoreAccumulator
from nar.evaluations import record_evaluations, record_invariance
from nar.memory import EVAL_MEMORY_SHARE, evaluation_bytes_per_sample, free_memory_bytes
from nar.model import nb_dims_of, net_config_of
from nar.run_dir import RunDir, _recorded_best, load_best, warn
from nar.run_model import (Placement, RunModel, build_run_model, enable_compilation_cache,
                           make_optimizer)


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
