"""Checks that need no data, run before JAX, dm-clrs or any data loads.

A setting that cannot work, or a directory that cannot be used, is refused in
one line within a second of the command starting, not after a minute of
imports, sampling and compilation. Each check here answers what a later,
authoritative one answers (`RunDir.prepare`, `nar.methods.check_runnable`,
`evaluate_run_sizes`), from the same rules, with what the base layer knows:
the catalogue's names, the configuration, the files of the run directory.
Nothing is written.
"""

from __future__ import annotations

import os
from typing import Callable

from nar import catalogue, registry
from nar.config import (HINT_RELIC, ConfigError, TrainConfig, config_conflicts, load_config,
                        load_config_file)
from nar.errors import RunError, RunInUseError


def check_training(config: TrainConfig) -> None:
  """Everything about a validated configuration that needs no data: its sizes
  and settings against its method and algorithms, then its run directory.

  Raises:
    ConfigError, RunError: the first problem, in one line.
  """
  check_sizes(config)
  check_method_settings(config)
  check_run_directory(config)


# ------------------------------------------------------------------ sizes
# `nar.sample.STRING_MATCHERS` and the protocol's longest needle (`protocol_kwargs`:
# length_needle=-8, a needle of 1 to 8 characters); tests/test_preflight.py checks both.
STRING_MATCHERS = ('kmp_matcher', 'naive_string_matcher')
LONGEST_NEEDLE = 8


def check_sizes(config: TrainConfig) -> None:
  """Sizes the samplers can draw: dm-clrs's string sampler places a needle of up
  to LONGEST_NEEDLE characters in a haystack of the rest, at a position below
  (haystack - needle), so its training and validation problems (nodes: training
  size x 5/4, `data.train_sizes`; validation size) need more than twice that."""
  shortest = 2 * LONGEST_NEEDLE + 1
  for algorithm in config.algorithms:
    if algorithm not in STRING_MATCHERS:
      continue
    largest = max(config.train_sizes)
    if largest * 5 // 4 < shortest:
      raise ConfigError(f'{algorithm} trains on strings of (largest training size) x 5/4 '
                        f'characters with a needle of up to {LONGEST_NEEDLE}: train_sizes needs '
                        f'a size >= {-(-shortest * 4 // 5)}, got {list(config.train_sizes)}')
    if config.val_size is not None and config.val_size < shortest:
      raise ConfigError(f'{algorithm} validates on strings with a needle of up to '
                        f'{LONGEST_NEEDLE} characters: val_size needs >= {shortest}, got '
                        f'{config.val_size}')


# --------------------------------------------------------- method settings
def _hint_relic_settings(config: TrainConfig) -> None:
  """The settings group of Hint-ReLIC and its ablations (`nar.hint_relic`):
  they train on augmented twins (an augmentation rule per algorithm) and
  regularise the hints `relic_hints` names (`regularised_hints`)."""
  method = config.method
  names = config.algorithms
  if len(names) > 1:
    applies = [a for a in names if a in catalogue.AUGMENTED]
    if not applies:
      raise ConfigError(f'method {method} applies to none of {", ".join(names)} '
                        '(each would be trained by the baseline); use --method baseline')
    names = applies
  elif names[0] not in catalogue.AUGMENTED:
    raise ConfigError(f"method {method} needs an augmentation rule, and {names[0]} has none; "
                      f"supported: {', '.join(catalogue.AUGMENTED)}")
  for algorithm in names:
    hints = [h.split(':')[0] for h in catalogue.HINTS[algorithm]]
    chosen = hints
    if config.relic_hints != 'all':
      wanted = [h.strip() for h in config.relic_hints.split(',') if h.strip()]
      unknown = sorted(set(wanted) - set(hints))
      if unknown:
        raise ConfigError(f"relic_hints: unknown hints {unknown}; this algorithm's hints: "
                          f"{', '.join(hints)}")
      chosen = [h for h in hints if h in wanted]
    if not chosen:
      raise ConfigError(f'relic_hints {config.relic_hints!r} selects no hint: Hint-ReLIC '
                        'would regularise nothing')


# The checks of a settings group (`nar.config.Rule.group`), for every method that
# reads the group (`registry.MethodEntry.reads`).
GROUP_CHECKS: dict[str, Callable[[TrainConfig], None]] = {HINT_RELIC: _hint_relic_settings}


def check_method_settings(config: TrainConfig) -> None:
  """The method's settings against the algorithms, as `check_runnable` will check
  them (tests/test_preflight.py compares the two on every method and algorithm)."""
  entry = registry.methods().get(config.method)
  if entry is None:
    raise ConfigError(f"unknown method '{config.method}'; choose one of: "
                      f"{', '.join(registry.methods())}")
  config = config.as_trained()
  if len(config.algorithms) > 1 and not entry.multi_task:
    raise ConfigError(f'method {config.method} does not support multi-task training (several '
                      'algorithms); train one algorithm at a time with it')
  for group, check in GROUP_CHECKS.items():
    if group in entry.reads:
      check(config)


# ------------------------------------------------------------ run directory
def _lock_held(path: str) -> bool:
  """Whether another process holds the run directory's lock (`RunDir.lock`),
  asked without creating the lock file."""
  import fcntl
  lock = os.path.join(path, '.lock')
  try:
    f = open(lock, 'rb')
  except OSError:
    return False
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    return True
  finally:
    f.close()      # closing releases a lock taken here
  return False


def saved_progress(path: str) -> bool:
  """Whether a run directory holds anything worth keeping: a step checkpoint,
  the best checkpoint or results (as `RunDir.saved_progress`)."""
  checkpoints = os.path.join(path, 'checkpoints')
  try:
    names = os.listdir(checkpoints)
  except OSError:
    names = []
  return (any(n.startswith('step-') and n[5:].isdigit() for n in names) or 'best' in names
          or os.path.exists(os.path.join(path, 'results.json')))


def check_run_directory(config: TrainConfig) -> None:
  """`config.out` can hold this run: not a file, in a writable place, not in use
  by another process, not holding a run of other settings that saved progress."""
  path = config.out
  if os.path.exists(path) and not os.path.isdir(path):
    raise ConfigError(f'output directory {path} is a file, not a directory; choose another --out')
  existing = path
  while not os.path.exists(existing):
    parent = os.path.dirname(os.path.abspath(existing))
    if parent == existing:
      break
    existing = parent
  if not os.path.isdir(existing):
    raise ConfigError(f'output directory {path} cannot be created: {existing} is a file')
  if not os.access(existing, os.W_OK | os.X_OK):
    raise ConfigError(f'output directory {path} is not writable: permission denied')
  if existing != path and existing != os.path.abspath(path):
    return
  if _lock_held(path):
    raise RunInUseError(f'{path} is in use by another process (a run is going on there); '
                        'wait for it or stop it first')
  config_path = os.path.join(path, 'config.json')
  if not os.path.exists(config_path):
    return
  try:
    saved = load_config_file(config_path)
  except ConfigError as e:
    raise RunError(f'{e}; move it away (or use another --out) to start this run there') from e
  conflicts = config_conflicts(saved, config)
  if conflicts and saved_progress(path):
    raise RunError(f'{path} holds a run with another configuration (' + '; '.join(conflicts)
                   + '); use another --out or the same settings')


# ----------------------------------------------------------- evaluate, export
def check_run_to_evaluate(run_dir: str, best_only: bool = False) -> TrainConfig:
  """A run directory `nar evaluate` (or, `best_only`, `nar export`) can read:
  its configuration, and a checkpoint to take the best parameters from.

  Returns:
    The run's configuration.
  """
  config_path = os.path.join(run_dir, 'config.json')
  if not os.path.isfile(config_path):
    raise RunError(f'{run_dir} is not a run directory (no config.json)')
  config = load_config(config_path)
  checkpoints = os.path.join(run_dir, 'checkpoints')
  if best_only:
    if not os.path.isdir(os.path.join(checkpoints, 'best')):
      raise RunError(f'{run_dir} has no best checkpoint yet (checkpoints/best)')
  elif not os.path.isdir(checkpoints) or not os.listdir(checkpoints):
    raise RunError(f'{run_dir} has no best checkpoint yet (checkpoints/best)')
  return config


def saved_checkpoint_note(run_dir: str) -> str:
  """What a run stopped now keeps, for the stop line (checkpoints are renamed
  into place whole: the newest step checkpoint on disk is intact or, if not,
  the resume skips it for the one before)."""
  try:
    steps = sorted(int(n[5:]) for n in os.listdir(os.path.join(run_dir, 'checkpoints'))
                   if n.startswith('step-') and n[5:].isdigit())
  except OSError:
    steps = []
  if not steps:
    return 'no checkpoint was saved yet; run the same command again to start'
  path = os.path.join(run_dir, 'checkpoints', f'step-{steps[-1]:08d}')
  return (f'the newest checkpoint, step {steps[-1]}, is kept ({path}); run the same command '
          'again to go on from it')
