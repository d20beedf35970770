"""Training and evaluation, top to bottom.

    config -> data streams -> network + Optax -> jitted step -> loop
           (validation every K steps, best checkpoint, resumable)
           -> OOD test of the best parameters -> results.json

Several algorithms (`config.algorithms`, multi-task): one network with a shared
processor; step k trains algorithm k mod A (its own stream, padding plan and
jitted step); the best checkpoint is the step with the highest sum of the
per-algorithm validation scores (as dm-clrs's run.py); each is tested at the end.

Data parallelism: the global batch is split along its batch axis over every
local device (`jax.sharding`), parameters are replicated and XLA reduces the
gradients; with one device this is the plain single-device path.

The parts live in their own modules, which this one imports (never the
reverse): `nar.run_model` (devices, network, optimizer, the jitted step and
predict), `nar.run_programs` (their cache and ahead-of-time compilation),
`nar.run_dir` (the run's files, best checkpoint, lock and stop signals) and
`nar.eval_run` (validation and test scores, `nar evaluate`). Here: `train`,
its checks, the loop, and the test of the best checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import sys
import time
from typing import Callable, Optional

import haiku as hk
import jax
import numpy as np
import optax

from nar import checkpoint as ckpt
from nar import distributed
from nar import provenance
from nar.compilation import CompileLog, Precompiler
from nar import data as data_lib
from nar import storage
from nar import tracking
from nar.config import TrainConfig
from nar.errors import RunError, RunInUseError, Stopped
from nar.memory import (EVAL_BYTES_PER_PAIR_UNIT, EVAL_MEMORY_SHARE, check_training_memory,
                        evaluation_bytes_per_sample, free_memory_bytes, host_free_bytes)
from nar.progress import TrainingBar
from nar.methods import check_runnable
from nar.preflight import check_sizes
from nar.eval_run import (evaluate_invariance, evaluate_run, evaluate_run_sizes, evaluate_split,
                          evaluation_batch_size, evaluation_shapes, test_algorithms)
from nar.run_dir import RunDir, _install_stop_handlers, _restore_handlers, load_best, warn
from nar.run_model import (Placement, RunModel, build_network, build_run_model,
                           enable_compilation_cache, gradient_shares, init_network,
                           make_optimizer, make_part_gradient_norms, make_predict, make_update,
                           other_algorithms_modules)
from nar.run_programs import TaskBatches, _program_store, _RunPrograms, _shape_key

# What `from nar.train import ...` has always offered (tests, scripts, users): the
# names defined here and those of the modules above. A test that patches one
# patches the module whose code reads it (`free_memory_bytes`: here for
# `check_memory`, `nar.eval_run` for the evaluation batch).
__all__ = [
    # defined here
    'train', 'check_memory', 'versions',
    # nar.run_model
    'Placement', 'RunModel', 'build_network', 'build_run_model', 'enable_compilation_cache',
    'gradient_shares', 'init_network', 'make_optimizer', 'make_part_gradient_norms',
    'make_predict', 'make_update', 'other_algorithms_modules',
    # nar.run_programs
    'TaskBatches',
    # nar.run_dir
    'RunDir', 'load_best', 'warn',
    # nar.eval_run
    'evaluate_invariance', 'evaluate_run', 'evaluate_run_sizes', 'evaluate_split',
    'evaluation_batch_size', 'evaluation_shapes', 'test_algorithms',
    # nar.memory and nar.errors
    'EVAL_BYTES_PER_PAIR_UNIT', 'EVAL_MEMORY_SHARE', 'evaluation_bytes_per_sample',
    'free_memory_bytes',
    'RunError', 'RunInUseError', 'Stopped',
]


def versions() -> dict:
  import clrs
  return {'python': platform.python_version(), 'jax': jax.__version__,
          'jaxlib': jax.lib.__version__ if hasattr(jax.lib, '__version__') else None,
          'dm-haiku': hk.__version__, 'optax': optax.__version__, 'numpy': np.__version__,
          'dm-clrs': clrs.__version__, 'backend': jax.default_backend(),
          'devices': [str(d) for d in jax.devices()],
          'device_kind': jax.devices()[0].device_kind, 'code': provenance.code_version()}


# --------------------------------------------------------------------- train
def train(config: TrainConfig, *, progress: bool = True, stop_after: Optional[int] = None,
          method_factory: Optional[Callable] = None) -> dict:
  """Trains, validates, tests; returns the results dict (also written to
  `results.json`). `stop_after` ends the process's work at that step without
  finishing (used to test resumption)."""
  # What the run trains and what its config.json says: the method's fixed values applied.
  config = config.validate().as_trained()
  check_sizes(config)
  check_runnable(config)       # before anything is written: nothing blocks a corrected command
  tracking.check_available(config)
  check_memory(config)         # nor anything generated: a run that cannot fit is refused first
  run = RunDir(config.out)
  try:
    return _train(run, config, progress, stop_after, method_factory)
  finally:
    run.tracker.close()
    run.unlock()


def check_memory(config: TrainConfig):
  """The run's memory plan against the free memory of its devices (and host):
  ConfigError, in one line with the nearest settings that fit, when it cannot fit
  (`nar.memory`). NAR_MEMORY_CHECK=0 turns the refusal off (the plan is an estimate)."""
  if os.environ.get('NAR_MEMORY_CHECK', '1').lower() in ('0', 'off', 'false', 'no'):
    return None
  shared = jax.default_backend() == 'cpu'
  return check_training_memory(config, free=free_memory_bytes(), devices=len(jax.devices()),
                               host_free=None if shared else host_free_bytes(), shared=shared)


@dataclasses.dataclass
class _Reporting:
  """Who writes and who speaks: with several hosts, process 0 owns the run
  directory (`writer`) and only it shows progress; warnings (repairs, skipped
  files) are shown even in a quiet run."""
  writer: bool
  progress: bool

  def say(self, msg: str) -> None:
    if self.progress:
      print(msg, file=sys.stderr, flush=True)

  def warn(self, msg: str) -> None:
    if self.writer:
      warn(msg)


@dataclasses.dataclass
class _Progress:
  """Where training stands: the state, the next step, the best validation so far
  ({'score', 'step'} and, multi-task, 'per_algorithm') and the seconds spent,
  carried through checkpoints so that a resumed run reports what it cost in all
  its processes."""
  state: dict
  step: int
  best: dict
  timings: dict


def _train(run: RunDir, config: TrainConfig, progress: bool, stop_after: Optional[int],
           method_factory: Optional[Callable]) -> dict:
  writer = distributed.is_writer()
  io = _Reporting(writer=writer, progress=progress and writer)
  resuming = run.prepare(config, report=io.warn) if writer else False
  placement = Placement.create(config.batch_size)
  enable_compilation_cache(config.resolved_cache_dir())
  model = build_run_model(config, method_factory)
  hosts = f', {jax.process_count()} processes' if jax.process_count() > 1 else ''
  io.say(f'[nar] {config.algorithm}: {config.method}, {config.processor} hidden {config.hidden}, '
         f'batch {config.batch_size}, {config.steps} steps, seed {config.seed}, '
         f'{len(jax.devices())} {jax.default_backend()} device(s){hosts}')
  optimizer = make_optimizer(config)
  base_key = jax.random.PRNGKey(config.seed)
  # One host compiles its programs ahead of time, several at once; with several
  # hosts each compiles a program when it first runs it, as they all do.
  precompiler = Precompiler(None if jax.process_count() == 1 else 0)
  compile_log = CompileLog().start()
  programs = None
  try:
    programs = _RunPrograms(model, optimizer, placement, precompiler, base_key,
                            _program_store(model, placement))
    now = _start_or_resume(run, model, programs, resuming, io)
    if writer:
      run.truncate_metrics(now.step, report=io.warn)
      run.tracker = tracking.open_trackers(config, run.path, now.step)
    now.state = placement.replicate(now.state)
    stopped = _train_loop(run, model, placement, programs, base_key, now, io, stop_after)
    if stopped is not None:
      return stopped
    return _test_best(run, model, programs.predicts, placement, now, io, compile_log)
  finally:
    if programs is not None and programs.prefetch is not None:
      programs.prefetch.close()
    precompiler.close()
    compile_log.stop()


def _start_or_resume(run: RunDir, model: RunModel, programs: _RunPrograms, resuming: bool,
                     io: _Reporting) -> _Progress:
  """A fresh initialisation, or the newest intact checkpoint's state (every host
  gets the writer's); also starts the training batches and the programs'
  compilation (`programs.start_training`), the initialisation's first."""
  base_key = programs.base_key
  init_key = jax.random.fold_in(base_key, -1 % (2 ** 31))
  state = None
  start_step, best = 0, {'score': -math.inf, 'step': -1}
  timings = {'compile_s': 0.0, 'train_s': 0.0, 'eval_s': 0.0, 'diagnostics_s': 0.0,
             'steps_timed': 0, 'processes': 1}
  if resuming:
    for name in ckpt.recover_all(run.checkpoints):
      io.warn(f'warning: checkpoint {name} was being replaced when the last process stopped; '
              'its previous version is put back')
    found = ckpt.latest_good(run.checkpoints, programs.state_avals, report=io.warn)
    if found is not None:
      state, meta, path = found
      start_step, best = meta['step'], meta['best']
      earlier = meta.get('timings') or {}     # absent in checkpoints written before
      for key in ('compile_s', 'train_s', 'eval_s', 'diagnostics_s', 'steps_timed'):
        timings[key] += earlier.get(key, 0)
      timings['processes'] += earlier.get('processes', 0)
      io.say(f'[nar] resuming from {path} (step {start_step})')
      if best['step'] >= 0:     # checked now, not at the end: re-established or refused
        load_best(run, state, best, report=io.warn)
  if state is None:
    programs.init.precompile(init_key, model.examples)
  programs.start_training(start_step)
  if state is None:
    t0 = time.perf_counter()
    state = programs.init(init_key, model.examples)
    timings['compile_s'] += time.perf_counter() - t0
  state, start_step, best_score, best_step = distributed.broadcast_from_writer(
      (jax.device_get(state), np.int64(start_step), np.float64(best['score']),
       np.int64(best['step'])))
  # What only the writer uses (the per-algorithm scores of the best step) is kept as it read it.
  extra = {k: v for k, v in best.items() if k not in ('score', 'step')}
  best = {'score': float(best_score), 'step': int(best_step), **extra}
  return _Progress(state=state, step=int(start_step), best=best, timings=timings)


def _train_loop(run: RunDir, model: RunModel, placement: Placement, programs: _RunPrograms,
                base_key, now: _Progress, io: _Reporting,
                stop_after: Optional[int]) -> Optional[dict]:
  """Steps from `now.step` to config.steps (updating `now`), validating and
  checkpointing every eval_every steps. Multi-task: step k trains algorithm
  k mod A on batch k // A of its own stream, with its own jitted step.

  Returns:
    None when the last step is done; {'stopped_at': step} at `stop_after`.
  Raises:
    RunError on a non-finite loss or a stop signal (after saving a checkpoint).
  """
  config, names, tasks = model.config, model.names, model.tasks
  count = len(names)
  multi = model.multi_task
  cache_dir = config.resolved_cache_dir()
  vals = [data_lib.load_split(a, 'val', size=config.val_size, num_samples=config.val_samples,
                              cache_dir=cache_dir, progress=io.progress) for a in names]
  predicts, updates = programs.predicts, programs.updates
  for i, val in enumerate(vals):
    programs.precompile_evaluation(i, val, config.eval_batch_size)
  if now.step < config.steps:     # the test's programs too, while the first steps compile
    for i, name in enumerate(names):
      test = data_lib.load_split(name, 'test', size=config.test_size,
                                 num_samples=config.test_samples, cache_dir=cache_dir,
                                 progress=io.progress)
      programs.precompile_evaluation(i, test, config.eval_batch_size)
  part_norms = [make_part_gradient_norms(t.loss_fn(n), t.loss_parts, placement)
                if len(t.loss_parts) > 1 and config.grad_terms_every > 0 else None
                for t, n in zip(tasks, model.nets)]
  timings = now.timings
  start_step = now.step

  def save_state(step: int) -> Optional[str]:
    if not io.writer:
      return None
    meta = {'step': step, 'best': now.best, 'config': config.to_json(),
            'timings': dict(timings)}
    path = ckpt.save(run.checkpoints, f'step-{step:08d}', jax.device_get(now.state), meta)
    # The best step's checkpoint stays: the second copy of the best parameters.
    ckpt.prune(run.checkpoints, config.keep_checkpoints, protect=now.best['step'])
    return path

  def validate(step: int) -> None:
    t1 = time.perf_counter()
    per = [evaluate_split(pr, now.state['params'], v, sp, config.eval_batch_size, placement)
           for pr, v, sp in zip(predicts, vals, model.specs)]
    timings['eval_s'] += time.perf_counter() - t1
    if multi:
      # Model selection on the sum of the per-algorithm scores, as dm-clrs's run.py.
      scores = {'score': sum(x['score'] for x in per),
                'per_algorithm': {a: x for a, x in zip(names, per)}}
    else:
      scores = per[0]
    if io.writer:
      run.append_metrics({'kind': 'val', 'step': step, **scores})
    if scores['score'] > now.best['score']:
      now.best = {'score': scores['score'], 'step': step}
      if multi:
        now.best['per_algorithm'] = {a: x['score'] for a, x in zip(names, per)}
      if io.writer:
        ckpt.save(run.checkpoints, 'best', jax.device_get(now.state['params']),
                  {'step': step, 'best': now.best})

  last_good = None
  timed_at_record = (timings['steps_timed'], timings['train_s'])
  seen_shapes = set()
  bar = None
  if io.progress:
    # In a log file (not a terminal) a refresh every 30 s keeps the log readable.
    bar = TrainingBar(config.algorithm, config.steps, initial=start_step, file=sys.stderr)
    if math.isfinite(now.best['score']):      # resumed after a validation
      bar.validated(now.best['score'])
  stop_signal = []
  previous_handlers = _install_stop_handlers(stop_signal)
  try:
    while now.step < config.steps:
      step = now.step
      if stop_after is not None and step >= stop_after:
        return {'stopped_at': step}
      if stop_signal:
        path = save_state(step)
        signum, name = stop_signal[0]
        raise Stopped(signum, name, f'at step {step}: checkpoint saved at {path}; run the same '
                      'command again to resume')
      placed = programs.next_batch(step)
      task = step % count
      shape = _shape_key(task, placed)
      first_of_shape = shape not in seen_shapes
      if bar is not None and first_of_shape:
        bar.compiling(not updates[task].ready(now.state['params'], now.state['opt_state'],
                                              base_key, *placed))
      if part_norms[task] is not None and step % config.grad_terms_every == 0:
        # Before the update: its parameters are donated to it.
        t_diag = time.perf_counter()
        record = gradient_shares(part_norms[task](now.state['params'], jax.random.fold_in(
            base_key, step), *placed))
        timings['diagnostics_s'] = timings.get('diagnostics_s', 0.0) + time.perf_counter() - t_diag
        if io.writer:
          run.append_metrics({'kind': 'grad_terms', 'step': step,
                              **({'algorithm': names[task]} if multi else {}), **record})
      t0 = time.perf_counter()
      params, opt_state, loss, terms, gnorm = updates[task](
          now.state['params'], now.state['opt_state'], jax.random.fold_in(base_key, step),
          *placed)
      loss = float(loss)
      dt = time.perf_counter() - t0
      if first_of_shape:      # the first step of each shape compiles (or loads) it
        seen_shapes.add(shape)
        timings['compile_s'] += dt
      else:
        timings['train_s'] += dt
        timings['steps_timed'] += 1
      if not (math.isfinite(loss) and math.isfinite(float(gnorm))):
        terms = {k: float(v) for k, v in jax.device_get(terms).items()}
        raise RunError(
            f'non-finite loss at step {step}: loss={loss}, grad norm={float(gnorm)}, terms='
            + ', '.join(f'{k}={v:.4g}' for k, v in terms.items())
            + f'; last good checkpoint: {last_good or "none"} (kept)')
      now.state = {'params': params, 'opt_state': opt_state}
      now.step = step = step + 1
      if step % config.log_every == 0 or step == config.steps:
        rec = {'kind': 'train', 'step': step, 'loss': loss, 'grad_norm': float(gnorm)}
        if multi:
          rec['algorithm'] = names[task]
        # Training throughput since the last record, compiling steps left out.
        timed = timings['steps_timed'] - timed_at_record[0]
        if timed:
          rec['samples_per_s'] = (timed * config.batch_size
                                  / (timings['train_s'] - timed_at_record[1]))
        timed_at_record = (timings['steps_timed'], timings['train_s'])
        rec.update({k: float(v) for k, v in jax.device_get(terms).items()})
        if io.writer:
          run.append_metrics(rec)
      if bar is not None:
        bar.step(dt, steady=not first_of_shape, loss=loss)
      if step % config.eval_every == 0 or step == config.steps:
        validate(step)
        if bar is not None:
          bar.validated(now.best['score'])
        last_good = save_state(step)
    if stop_signal:     # came during the last steps: stopped before the test, as asked
      signum, name = stop_signal[0]
      raise Stopped(signum, name, f'at step {now.step}, the last: checkpoint saved at '
                    f'{last_good}; run the same command again to test and write results.json')
  finally:
    _restore_handlers(previous_handlers)
    if bar is not None:
      bar.close()
  return None


def _test_best(run: RunDir, model: RunModel, predicts: list, placement: Placement,
               now: _Progress, io: _Reporting, compile_log: Optional[CompileLog] = None) -> dict:
  """The OOD test of the best validation step's parameters (and no others);
  writes and returns results.json's content."""
  config, names, best, timings = model.config, model.names, now.best, now.timings
  multi = model.multi_task
  test_params = jax.device_get(now.state['params'])
  tested_step = best['step'] if best['step'] >= 0 else now.step
  if io.writer and best['step'] >= 0:
    test_params = load_best(run, jax.device_get(now.state), best, report=io.warn)
  test_params = placement.replicate(distributed.broadcast_from_writer(test_params))
  t1 = time.perf_counter()
  tests = test_algorithms(model, predicts, test_params, config.test_size,
                          num_samples=config.test_samples, placement=placement,
                          progress=io.progress)
  timings['test_s'] = time.perf_counter() - t1
  if io.writer:
    for a, x in zip(names, tests):
      run.append_metrics({'kind': 'test', 'step': now.step, 'size': config.test_size,
                          **({'algorithm': a} if multi else {}), **x})
  samples_per_s = (timings['steps_timed'] * config.batch_size / timings['train_s']
                   if timings['train_s'] > 0 else None)
  if compile_log is not None:     # this process's: a resumed run compiled again
    compiled = compile_log.summary()
    timings['compile_programs'] = compiled['programs']
    timings['compile_from_cache'] = compiled['from_cache']
    io.say('[nar] compiled ' + compile_log.describe())
  # A multi-task run's own score is the mean over its algorithms; each is in per_algorithm.
  test_scores = {'score': sum(x['score'] for x in tests) / len(tests)} if multi else tests[0]
  results = {
      'algorithm': config.algorithm, 'method': config.method, 'seed': config.seed,
      'config': config.to_json(), 'versions': versions(),
      'best_val': best, 'test': test_scores, 'test_score': test_scores['score'],
      'test_size': config.test_size, 'steps': now.step, 'tested_step': tested_step,
      'timings': {**timings, 'train_samples_per_s': samples_per_s},
  }
  if multi:
    results['algorithms'] = list(names)
    results['selection'] = 'sum of the per-algorithm validation scores'
    results['val_score_sum'] = best['score']
    results['per_algorithm'] = {
        a: {'best_val': {'score': (best.get('per_algorithm') or {}).get(a), 'step': best['step']},
            'test_score': x['score'], 'test': x} for a, x in zip(names, tests)}
  if io.writer:
    storage.atomic_write_json(run.results, results)
  for a, x in zip(names, tests):
    val_score = best['score'] if not multi else (best.get('per_algorithm') or {}).get(a)
    val_text = f'{val_score:.4f}' if isinstance(val_score, float) else 'n/a'
    io.say(f"[nar] {a} {config.method}: best val {val_text} at step {best['step']}"
           f"{' (selected on the sum over algorithms)' if multi else ''}; OOD test "
           f"(n={config.test_size}) score {x['score']:.4f}")
  return results
