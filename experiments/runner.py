"""Running a sweep's runs: one in this process (`_run_in_process`), one as its
own process (`_run_in_subprocess`), or many at a time (`_run_parallel`), where
runs that compile the same programs (`compile_signature`) wait for the first of
them to fill the persistent compilation cache.
"""

from __future__ import annotations

import json
import os
import sys
import time

from nar.config import TrainConfig, compile_cache_dir


class _TeeToLog:
  """A text stream that also appends to a run's train.log: a progress bar's
  in-place refreshes (carriage returns) go to the log at most every 30 s, as the
  bar itself refreshes when its output is a file."""
  LOG_EVERY_S = 30.0

  def __init__(self, stream, log):
    self.stream, self.log, self._last_refresh = stream, log, -self.LOG_EVERY_S

  def write(self, text: str) -> int:
    self.stream.write(text)
    logged = text
    if '\r' in text and '\n' not in text:
      now = time.monotonic()
      if now - self._last_refresh < self.LOG_EVERY_S:
        return len(text)
      self._last_refresh = now
      logged = text.strip('\r') + '\n'
    self.log.write(logged)
    self.log.flush()
    return len(text)

  def flush(self) -> None:
    self.stream.flush()
    self.log.flush()

  def isatty(self) -> bool:
    return self.stream.isatty()

  def __getattr__(self, name):
    return getattr(self.stream, name)


def _run_in_process(config: TrainConfig, progress: bool):
  """One run in this process, its output also appended to <run dir>/train.log."""
  import contextlib
  from nar.errors import RunInUseError
  from nar.train import train
  os.makedirs(config.out, exist_ok=True)
  with open(os.path.join(config.out, 'train.log'), 'a') as log, \
       contextlib.redirect_stdout(_TeeToLog(sys.stdout, log)), \
       contextlib.redirect_stderr(_TeeToLog(sys.stderr, log)):
    try:
      return config.out, f"done, OOD {train(config, progress=progress)['test_score']:.4f}"
    except RunInUseError:     # another sweep into the same directory runs it now
      return config.out, 'skipped (in use by another process)'


def _run_in_subprocess(config: TrainConfig):
  """One run as its own process (`nar run`), output to <run dir>/train.log: a run
  that crashes (even by a signal) is reported and the sweep goes on."""
  import subprocess
  import tempfile
  os.makedirs(config.out, exist_ok=True)
  with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
    json.dump(config.to_json(), f)
  try:
    with open(os.path.join(config.out, 'train.log'), 'a') as log:
      code = subprocess.run([sys.executable, '-m', 'nar.cli', 'run', f.name],
                            stdout=log, stderr=subprocess.STDOUT).returncode
  finally:
    os.remove(f.name)
  if code != 0:
    return config.out, f'FAILED (exit code {code}; see train.log)'
  try:
    with open(os.path.join(config.out, 'results.json')) as f:
      return config.out, f"done, OOD {json.load(f)['test_score']:.4f}"
  except (OSError, ValueError, KeyError, TypeError) as e:
    return config.out, f'FAILED (results.json unreadable: {e.__class__.__name__}; see train.log)'


# Settings that change neither the programs a run compiles nor their shapes.
_NOT_COMPILED = ('seed', 'out', 'steps', 'prefetch', 'log_every', 'sampling_processes')


def compile_signature(config: TrainConfig) -> str:
  """Runs with equal signatures compile the same XLA programs (they differ only in
  seed or in how they are executed), so JAX's persistent compilation cache
  (`nar.run_model.enable_compilation_cache`) serves the second one what the first compiled."""
  d = config.to_json()
  for key in _NOT_COMPILED:
    d.pop(key, None)
  return json.dumps(d, sort_keys=True)


def _last_validation(out: str) -> int:
  """Step of the newest validation record in <out>/metrics.jsonl (-1: none yet)."""
  from nar import storage
  try:
    records, _ = storage.read_jsonl(os.path.join(out, 'metrics.jsonl'))  # a torn line is left out
  except OSError:
    return -1
  steps = [r.get('step') for r in records if r.get('kind') == 'val']
  return max((int(x) for x in steps if isinstance(x, (int, float))), default=-1)


_POLL_S = 2.0        # how often a waiting group's leader is looked at


def _run_parallel(todo: list, workers: int, compile_warmup: bool = True,
                  progress: bool = True) -> list:
  """Runs `todo` (TrainConfigs) `workers` at a time, each in its own process.

  Compilation is the slow part of a short run's start (~10 s a program on a CPU;
  on a GPU machine whose host cores are busy sampling, 20-50 s, and 5 concurrent
  compiles of one program left an H100 idle for 7 minutes: results/gpu/lease3).
  So, with `compile_warmup`, only the first run of each compile signature starts at
  once; the others of its group start when it has logged its first validation
  (every training shape and the validation program are compiled by then, and in the
  cache) or has ended. Runs of other signatures fill the free workers meanwhile.

  Args:
    progress: a bar over the runs (finished, running, waiting for a compilation; ETA).
  Returns:
    [(run dir, status)] in the order the runs ended.
  """
  from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
  bar = None
  if progress:
    from tqdm import tqdm
    bar = tqdm(total=len(todo), desc='sweep', unit='run', smoothing=0)
  say = bar.write if bar is not None else print
  groups: dict[str, list] = {}
  for config in todo:
    shares_cache = compile_cache_dir(config.resolved_cache_dir()) is not None
    key = compile_signature(config) if compile_warmup and shares_cache else config.out
    groups.setdefault(key, []).append(config)
  waiting = {}             # leader's future -> (leader, its last validation step, followers)
  report = []
  with ThreadPoolExecutor(workers) as pool:
    futures = set()
    for leader, *followers in groups.values():
      future = pool.submit(_run_in_subprocess, leader)
      futures.add(future)
      if followers:
        waiting[future] = (leader, _last_validation(leader.out), followers)
    try:
      while futures:
        finished, futures = wait(futures, timeout=_POLL_S, return_when=FIRST_COMPLETED)
        for future in finished:
          path, status = future.result()
          report.append((path, status))
          say(f'[sweep] {path}: {status}')
        for future, (leader, seen, followers) in list(waiting.items()):
          if future.done() or _last_validation(leader.out) > seen:
            del waiting[future]
            futures |= {pool.submit(_run_in_subprocess, c) for c in followers}
        if bar is not None:
          bar.update(len(finished))
          bar.set_postfix(running=sum(f.running() for f in futures),
                          waiting_compile=sum(len(w[2]) for w in waiting.values()), refresh=True)
    except KeyboardInterrupt as e:
      # Ctrl-C: the runs going on get it too (same process group) and checkpoint;
      # none of the waiting ones starts.
      for future in futures:
        future.cancel()
      if not getattr(e, 'saved', True):
        e.saved = ('the runs going on save a checkpoint and stop (see their train.log); '
                   'run the same sweep again to resume')
      raise
    finally:
      if bar is not None:
        bar.close()
  return report
