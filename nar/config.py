"""The training configuration: one dataclass, validated, overridable from the CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Optional

from nar import registry
from nar.catalogue import CLRS30_ALGORITHMS

PRECISIONS = ('float32', 'bfloat16')
# How Hint-ReLIC computes the twin side (see nar.hint_relic): 'step', one
# processor step per valid pair from the original's latent; 'rollout', the
# twin's whole trajectory through the network.
RELIC_TWIN_MODES = ('step', 'rollout')

# The backward pass of the time loop: 'full' recomputes each step's activations
# from the step's input (jax.checkpoint of the scan body), 'none' stores them.
REMAT_MODES = ('full', 'none')

# The version of config.json's schema (its key 'schema'; files without one are
# version 1). Version 2: Hint-ReLIC's defaults became the paper's objective
# (relic_beta 0, relic_twin 'step'), the supervised rollout variant became the
# method `hint_relic_supervised`, and a saved configuration is the one trained
# (the method's fixed values applied). `migrate` reads every older version.
CONFIG_SCHEMA = 2

# dm-clrs examples/run.py's model settings (docs/run_py_settings.md).
# How hints are used: encoded as inputs and decoded (supervised), decoded only, or not at all.
HINT_MODES = ('encoded_decoded', 'decoded_only', 'none')
# How a predicted hint is fed back as the next step's input (dm-clrs `hint_repred_mode`).
HINT_REPRED_MODES = ('soft', 'hard', 'hard_on_eval')
ENCODER_INITS = ('default', 'xavier_on_scalars')
# Experiment trackers (`nar.tracking`): several comma-separated, or 'none'.
TRACKERS = ('none', 'tensorboard', 'wandb')

# Settings added after runs were saved whose value in those runs was not today's
# default: a version-1 config.json without the key is read with this value.
LEGACY_VALUES = {'relic_twin': 'rollout', 'remat': 'none', 'relic_beta': 1.0}

# A version-1 `hint_relic` run with these values trained what is now the method
# `hint_relic_supervised` (twins supervised, twin side from the twin's rollout).
_V1_SUPERVISED = {'relic_beta': 1.0, 'relic_twin': 'rollout'}


class ConfigError(ValueError):
  """A setting that is unknown, of the wrong type or out of range."""


# A 'names' setting given this word holds every name it may hold.
ALL = 'all'

# Integers reach JAX's 32-bit counters (`fold_in(key, step)`) and NumPy's seeds.
INT_MAX = 2 ** 31 - 1
# Each message-passing step is unrolled in the compiled step: past this, compilation
# grows long for no use run.py's users make of it.
MAX_MSG_PASSING_STEPS = 16
# Smaller inputs than this make no sense as a graph, an array or a string to
# search in (and some dm-clrs samplers fail on them).
MIN_SIZE = 4


def _num(x) -> str:
  return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f'{x:g}'


def _short(value) -> str:
  text = repr(value)
  return text if len(text) <= 60 else text[:57] + '...'


@dataclasses.dataclass(frozen=True)
class Rule:
  """What a setting may hold, declared next to its field (`setting(...)`).

  kind: 'int' | 'float' | 'bool' | 'str' | 'choice' | 'sizes' (a non-empty list
  of integers); `low`/`high` bound numbers (and each size) inclusively, `above`
  exclusively; `optional`: None is allowed (it means the default the help text
  names). Floats must be finite; integers are never booleans. `group`: the
  settings group the field belongs to when only some methods read it (a method
  declares the groups it reads when it is registered, `nar.registry`); None:
  every run reads it."""
  kind: str
  help: str
  low: Optional[float] = None
  high: Optional[float] = None
  above: Optional[float] = None
  choices: Any = ()               # names, or a function returning them (a registry)
  optional: bool = False
  group: Optional[str] = None

  def options(self) -> tuple:
    return tuple(self.choices() if callable(self.choices) else self.choices)

  def type_name(self) -> str:
    options = self.options()
    choices = ' | '.join(options) if len(options) <= 8 else f'one of {len(options)} names'
    base = {'int': 'integer', 'float': 'number', 'bool': 'true|false', 'str': 'text',
            'sizes': 'list of integers', 'choice': choices,
            'names': choices + ' (several: comma-separated)'}[self.kind]
    bounds = []
    if self.above is not None:
      bounds.append(f'> {_num(self.above)}')
    if self.low is not None and (self.high is None or self.high >= INT_MAX):
      bounds.append(f'>= {_num(self.low)}')
    elif self.low is not None:
      bounds.append(f'{_num(self.low)}..{_num(self.high)}')
    text = base + (' ' + ', '.join(bounds) if bounds else '')
    return text + (' or null' if self.optional else '')

  def check(self, name: str, value):
    """`value` as the field holds it (floats as float, sizes as a tuple), or ConfigError."""
    if value is None and self.optional:
      return None
    if self.kind == 'choice':
      if not isinstance(value, str) or value not in self.options():
        raise ConfigError(f'unknown {name} {_short(value)}; choose one of: '
                          f"{', '.join(self.options())}")
      return value
    if self.kind == 'names':
      return ','.join(self._names(name, value))
    if self.kind == 'bool':
      if not isinstance(value, bool):
        raise ConfigError(f'{name} must be true or false, got {_short(value)}')
      return value
    if self.kind == 'str':
      if not isinstance(value, str) or not value or '\x00' in value:
        raise ConfigError(f'{name} must be a non-empty text, got {_short(value)}')
      return value
    if self.kind == 'sizes':
      if (not isinstance(value, (list, tuple)) or not value
          or not all(isinstance(x, int) and not isinstance(x, bool) for x in value)):
        raise ConfigError(f'{name} must be a list of integers, got {_short(value)}')
      for x in value:
        self._bounds(name, x, f'sizes >= {_num(self.low)}' if self.low is not None else '')
      return tuple(value)
    if self.kind == 'int':
      if not isinstance(value, int) or isinstance(value, bool):
        what = 'a positive integer' if self.low == 1 else 'an integer'
        raise ConfigError(f'{name} must be {what}, got {_short(value)}')
      return self._bounds(name, value, 'a positive integer' if self.low == 1 else '')
    if self.kind == 'float':
      if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f'{name} must be a number, got {_short(value)}')
      try:
        as_float = float(value)
      except OverflowError:
        as_float = math.inf
      if not math.isfinite(as_float):
        raise ConfigError(f'{name} must be a finite number, got {_short(value)}')
      return self._bounds(name, as_float)
    raise AssertionError(self.kind)

  def _names(self, name: str, value) -> list:
    """The names of a comma-separated list, each known, none twice, at least one."""
    if not isinstance(value, str):
      raise ConfigError(f'{name} must be a name or comma-separated names, got {_short(value)}')
    if value.strip() == ALL:      # every choice, in its order (the 30 algorithms)
      return list(self.options())
    names = [x.strip() for x in value.split(',')]
    if not any(names):
      raise ConfigError(f'{name} names no algorithm; choose from: {", ".join(self.options())}')
    if not all(names):
      raise ConfigError(f'{name} {_short(value)} has an empty name (a stray comma?)')
    unknown = [x for x in names if x not in self.options()]
    if unknown:
      raise ConfigError(f"unknown {name} {', '.join(_short(x) for x in unknown)}; choose from: "
                        f"{', '.join(self.options())}")
    twice = sorted({x for x in names if names.count(x) > 1})
    if twice:
      raise ConfigError(f"{name} lists {', '.join(twice)} more than once; each algorithm is "
                        'trained once')
    return names

  def _bounds(self, name, value, what: str = ''):
    if self.above is not None and not value > self.above:
      raise ConfigError(f'{name} must be > {_num(self.above)}, got {_short(value)}')
    if self.low is not None and value < self.low:
      raise ConfigError(f'{name} must be {what or f">= {_num(self.low)}"}, got {_short(value)}')
    if self.high is not None and value > self.high:
      raise ConfigError(f'{name} must be <= {_num(self.high)}, got {_short(value)}')
    return value


def setting(default, help: str, kind: str, **rule) -> dataclasses.Field:  # noqa: A002
  """A TrainConfig field with its rule (see `Rule`)."""
  return dataclasses.field(default=default, metadata={'rule': Rule(kind, help, **rule)})


def _count(default, help, low=1, **rule):  # noqa: A002
  return setting(default, help, 'int', low=low, high=INT_MAX, **rule)


# The settings group of Hint-ReLIC and its ablations (`Rule.group`).
HINT_RELIC = 'hint_relic'


def _relic(default, help, kind, **rule):  # noqa: A002
  return setting(default, 'Hint-ReLIC: ' + help, kind, group=HINT_RELIC, **rule)


@dataclasses.dataclass
class TrainConfig:
  # Several comma-separated names: multi-task training (one network, one processor,
  # algorithms interleaved one per step; see nar.train). One name: the plain run.
  algorithm: str = setting('bfs', 'CLRS-30 algorithm (`nar algorithms`), or several '
                           'comma-separated (multi-task)', 'names', choices=CLRS30_ALGORITHMS)
  method: str = setting('baseline', 'training method (`nar train --help`; nar.registry)',
                        'choice', choices=lambda: tuple(registry.methods()))
  steps: int = _count(10_000, 'training steps')
  batch_size: int = _count(32, 'training samples per step (over all devices)')
  hidden: int = _count(128, 'width of the network')
  processor: str = setting('triplet_gmpnn', "processor kind: dm-clrs's or a registered one",
                           'choice', choices=registry.processor_kinds)
  seed: int = _count(42, 'seed of initialisation and training data', low=0)
  learning_rate: float = setting(1e-3, 'Adam learning rate', 'float', above=0)
  grad_clip: float = setting(1.0, 'clip the gradient to this global norm (0: no clipping)',
                             'float', low=0)
  train_sizes: tuple = setting((4, 7, 11, 13, 16), 'training problem sizes, cycled by step',
                               'sizes', low=MIN_SIZE, high=INT_MAX)
  eval_every: int = _count(500, 'validation (and checkpoint) cadence, in steps')
  log_every: int = _count(10, 'training-loss record cadence (metrics.jsonl), in steps')
  grad_terms_every: int = _count(
      100, "cadence of the loss parts' gradient norms and shares (metrics.jsonl, kind "
      "'grad_terms'; a forward and one backward per part), in steps (0: never)", low=0)
  eval_batch_size: int = _count(32, 'samples per evaluation batch')
  test_size: int = _count(64, 'size of the out-of-distribution test problems', low=MIN_SIZE)
  val_size: Optional[int] = _count(None, 'validation problem size (null: 16, string matchers 20)',
                                   low=MIN_SIZE, optional=True)
  test_samples: Optional[int] = _count(
      None, "test samples (null: 32 x the algorithm's multiplier)", optional=True)
  val_samples: Optional[int] = _count(
      None, "validation samples (null: 64 x the algorithm's multiplier)", optional=True)
  keep_checkpoints: int = _count(3, 'step checkpoints kept (besides best/ and its step)')
  out: str = setting('runs/default', 'run directory', 'str')
  cache_dir: Optional[str] = setting(
      None, 'data and compilation cache (null: $NAR_CACHE or ~/.cache/nar-hint-relic)', 'str',
      optional=True)
  prefetch: int = _count(4, 'training batches prepared ahead of the step')
  # Sampling is Python (dm-clrs's algorithms, the augmentations): one core's worth
  # per run unless it is spread over processes; on an accelerator that core, not
  # the device, can set the pace (Hint-ReLIC: ~0.1 s a batch).
  sampling_processes: int = _count(
      0, 'processes that sample training batches (0: a thread of the training process)',
      low=0)
  precision: str = setting('float32', 'bfloat16: mixed precision (float32 params and losses)',
                           'choice', choices=PRECISIONS)
  # 'full' measured 1.05-1.94x faster per training step on CPU (docs/speed.md): the
  # backward re-reading [T, B, N, N, H] stored activations cost more than recomputing them.
  remat: str = setting('full', "backward of the time loop: 'full' recomputes each step's "
                       "activations (less memory), 'none' stores them", 'choice',
                       choices=REMAT_MODES)
  # Measured on CPU (docs/speed.md): 4 groups 1.45-1.8x faster on bfs and kmp_matcher,
  # ~10% slower where every trajectory has the same length (insertion_sort).
  length_groups: int = setting(
      0, 'groups of samples of similar trajectory length per batch, each skipping the time '
      'steps past its longest sample (0: automatic, 4 on a CPU when lengths vary, else 1)', 'int',
      low=0, high=INT_MAX)
  # dm-clrs examples/run.py's settings, at its defaults (docs/run_py_settings.md maps
  # every run.py flag): the network of a run with other values equals dm-clrs's
  # BaselineModel built with them (tests/test_run_py_settings.py).
  hint_mode: str = setting('encoded_decoded', "hints encoded as inputs and decoded "
                           "('encoded_decoded'), only decoded ('decoded_only') or not used "
                           "('none': the no-hint baseline)", 'choice', choices=HINT_MODES)
  hint_teacher_forcing: float = setting(
      0.0, 'probability that a training sample reads the true hints of a step instead of its '
      'own prediction (encoded_decoded only)', 'float', low=0, high=1)
  hint_repred_mode: str = setting(
      'soft', "predicted hints fed back as probabilities ('soft'), argmax/threshold ('hard', "
      "no gradient through them) or soft in training and hard in evaluation ('hard_on_eval')",
      'choice', choices=HINT_REPRED_MODES)
  dropout_prob: float = setting(0.0, 'dropout on the processor output in training (< 1)',
                                'float', low=0, high=1)
  use_lstm: bool = setting(False, 'an LSTM after the processor (state per node)', 'bool')
  nb_msg_passing_steps: int = setting(1, 'processor applications per hint step', 'int',
                                      low=1, high=MAX_MSG_PASSING_STEPS)
  use_ln: bool = setting(True, 'layer normalisation in the processor', 'bool')
  nb_triplet_fts: int = setting(8, 'triplet features of the triplet processors', 'int', low=1,
                                high=INT_MAX)
  nb_heads: int = setting(1, 'attention heads of the GAT processors', 'int', low=1, high=INT_MAX)
  encoder_init: str = setting('xavier_on_scalars', "initialiser of the encoders: 'default', or "
                              "'xavier_on_scalars' (scalar hints at 1/sqrt(hidden))", 'choice',
                              choices=ENCODER_INITS)
  random_pos: bool = setting(True, 'random `pos` inputs in training and validation', 'bool')
  enforce_permutations: bool = setting(
      True, 'sorting outputs as permutation pointers (false: plain pointers)', 'bool')
  enforce_pred_as_input: bool = setting(
      True, 'a static pred_h hint moved to the input pred (12 algorithms)', 'bool')
  # Experiment tracking (nar.tracking): curves besides metrics.jsonl; changes nothing trained.
  log: str = setting('none', 'experiment trackers, comma-separated: tensorboard (event files '
                     'in <run>/tensorboard), wandb (offline, <run>/wandb); none: off', 'str')
  # Hint-ReLIC's settings (docs/method.md), group 'hint_relic': read only by the
  # methods registered as reading that group (nar.registry).
  relic_lambda: float = _relic(0.1, 'weight of contrast + alpha * KL', 'float', low=0)
  relic_alpha: float = _relic(1.0, 'weight of the KL invariance penalty', 'float', low=0)
  # The paper's objective: the twins enter only through the invariance term (0).
  # Supervising them ([ours]) is the method `hint_relic_supervised`.
  relic_beta: float = _relic(0.0, 'supervision of the augmented twin (0: the paper, twins '
                             'enter only through the invariance term)', 'float', low=0)
  # Chosen on insertion_sort validation (cpu protocol, 3 seeds, results/tuning): 0.5
  # scored 95.6 against 93.5 for 0.1 (lambda 0.1); lambda 1.0 was lower at either.
  relic_temperature: float = _relic(0.5, 'temperature of the contrast', 'float', above=0)
  relic_critic_hidden: int = _relic(128, 'width of the critic MLPs', 'int', low=2, high=INT_MAX)
  relic_contrast: bool = _relic(True, 'false: twins supervised only (data augmentation)', 'bool')
  relic_hints: str = _relic('all', 'comma-separated hint names to regularise, or all', 'str')
  augmentations: int = _relic(1, 'twins per sample', 'int', low=1, high=INT_MAX)
  relic_pairs: int = _relic(4, 'valid step pairs per twin used by the contrast', 'int', low=1,
                            high=INT_MAX)
  relic_twin: str = _relic('step', "how the twin side is computed: 'step' (one processor "
                           "step per pair from the original's state, the paper's) or 'rollout' "
                           "(the twin's own trajectory)", 'choice',
                           choices=RELIC_TWIN_MODES)

  @property
  def algorithms(self) -> tuple:
    """The algorithms trained, in their order (algorithm i's parameters are
    `algo_{i}_...`); one for a single-task run."""
    return tuple(x.strip() for x in self.algorithm.split(','))

  @property
  def multi_task(self) -> bool:
    return len(self.algorithms) > 1

  def validate(self) -> 'TrainConfig':
    """Checks every field against its declared rule (and normalises: floats as
    float, train_sizes as a tuple); ConfigError names the first bad one."""
    for f in dataclasses.fields(self):
      setattr(self, f.name, f.metadata['rule'].check(f.name, getattr(self, f.name)))
    self.log = ','.join(trackers_of(self.log))
    _check_combination(self)
    return self

  @property
  def trackers(self) -> tuple:
    """The experiment trackers the run writes to (`nar.tracking`); () when off."""
    return tuple(x for x in trackers_of(self.log) if x != 'none')

  def resolved_cache_dir(self) -> str:
    return self.cache_dir or os.environ.get('NAR_CACHE') or os.path.expanduser(
        '~/.cache/nar-hint-relic')

  def to_json(self) -> dict:
    """The settings as saved in config.json, with the schema version ('schema')."""
    d = dataclasses.asdict(self)
    d['train_sizes'] = list(self.train_sizes)
    d['schema'] = CONFIG_SCHEMA
    return d

  def as_trained(self) -> 'TrainConfig':
    """This configuration with the values its method fixes applied (e.g.
    `twins_only` trains with relic_contrast false): what a run trains, and what
    its config.json says. An unknown method is left as it is (validation names it)."""
    try:
      overrides = registry.method(self.method).overrides
    except KeyError:
      return self
    return dataclasses.replace(self, **overrides) if overrides else self

  @classmethod
  def from_json(cls, d: dict) -> 'TrainConfig':
    """A validated configuration from a saved one (config.json); keys added since
    it was saved take their legacy value or default (`migrate`)."""
    if not isinstance(d, dict):
      raise ConfigError(f'a configuration is a JSON object of settings, got {_short(d)}')
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(known) - {'schema'})
    if unknown:
      raise ConfigError(f'unknown configuration keys: {_short(", ".join(unknown))}')
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
      raise ConfigError(f'configuration lacks {", ".join(missing)} (every saved run names its '
                        'algorithm and method)')
    migrated = migrate(d)
    migrated.pop('schema')
    return cls(**migrated).validate()


def trackers_of(text: str) -> list:
  """The tracker names of a `log` setting ('tensorboard,wandb'); ConfigError for an
  unknown one, one named twice, or 'none' with others."""
  names = [x.strip() for x in text.split(',')]
  unknown = [x for x in names if x not in TRACKERS]
  if unknown:
    raise ConfigError(f"unknown log {', '.join(_short(x) for x in unknown)}; choose from: "
                      f"{', '.join(TRACKERS)} (several: comma-separated)")
  if len(set(names)) < len(names) or ('none' in names and len(names) > 1):
    raise ConfigError(f'log {_short(text)} names a tracker twice, or none with others')
  return names


# run.py's data processing flags (random pos, permutation pointers, pred_h as input).
DATA_PROCESSING = ('random_pos', 'enforce_permutations', 'enforce_pred_as_input')


def _check_combination(config: 'TrainConfig') -> None:
  """Settings valid alone that cannot go together (one-line ConfigError)."""
  if config.dropout_prob >= 1:
    raise ConfigError(f'dropout_prob must be < 1 (1 drops everything), got {config.dropout_prob}')
  for key in DATA_PROCESSING:
    if getattr(config, key) is not True:
      raise ConfigError(f"{key}=false is not applied here yet: the training stream, the "
                        "validation and test splits and their cache follow run.py's default "
                        f'processing ({key}=true) (docs/run_py_settings.md)')
  try:
    reads_relic = HINT_RELIC in registry.method(config.method).reads
  except KeyError:
    reads_relic = False
  if reads_relic:
    # Hint-ReLIC contrasts the representations of hint steps computed from encoded hints,
    # re-running single steps from a processor latent (nar.hint_relic).
    for key, needed in (('hint_mode', 'encoded_decoded'), ('use_lstm', False),
                        ('random_pos', True), ('enforce_permutations', True),
                        ('enforce_pred_as_input', True)):
      if getattr(config, key) != needed:
        raise ConfigError(f'method {config.method} needs {key}={json.dumps(needed)} (its '
                          'twins and single steps are built for the hints encoded and '
                          "decoded, run.py's data processing and no LSTM state); got "
                          f'{key}={json.dumps(getattr(config, key))}')


# Keys a saved configuration must have: without them it is not a run's configuration.
REQUIRED_KEYS = ('algorithm', 'method')


def compile_cache_dir(cache_dir: str) -> Optional[str]:
  """Where JAX's persistent compilation cache goes for a run whose data cache is
  `cache_dir`: `cache_dir`/xla, unless the variable NAR_COMPILE_CACHE says
  otherwise: 0 (or off) for none (None), a path to put every run's cache there
  whatever its `cache_dir` (runs with their own data caches, e.g. the tests)."""
  setting = os.environ.get('NAR_COMPILE_CACHE', '1')
  if setting.lower() in ('0', 'off', 'false', 'no'):
    return None
  if setting.lower() in ('', '1', 'on', 'true', 'yes'):
    return os.path.join(cache_dir, 'xla')
  return setting


def settings_table() -> list[tuple[str, str, str, str]]:
  """(key, type, default, description) of every setting (`nar train --list-settings`)."""
  rows = []
  for f in dataclasses.fields(TrainConfig):
    rule = f.metadata['rule']
    default = list(f.default) if isinstance(f.default, tuple) else f.default
    rows.append((f.name, rule.type_name(), json.dumps(default), rule.help))
  return rows


def migrate(saved: dict) -> dict:
  """A saved configuration (config.json, or a results.json's 'config') in
  today's schema (`CONFIG_SCHEMA`), as the run trained. Version 1: keys added
  since get the value the saved run had (LEGACY_VALUES); a `hint_relic` run of
  supervised rollout twins is named `hint_relic_supervised`; the method's fixed
  values (`TrainConfig.as_trained`) are applied, since version-1 files were
  saved before them (a `twins_only` file said relic_contrast true). The rest of
  a missing key's meaning is its default.

  Args:
    saved: the saved settings (not modified).
  Returns:
    A new dict with 'schema' set to `CONFIG_SCHEMA`.
  """
  if not isinstance(saved.get('schema', 1), int) or isinstance(saved.get('schema'), bool):
    raise ConfigError(f"a configuration's schema is a version number, got {_short(saved['schema'])}")
  version = saved.get('schema', 1)
  if version > CONFIG_SCHEMA:
    raise ConfigError(f'configuration schema {version} is newer than this version of nar '
                      f'reads ({CONFIG_SCHEMA}); update nar')
  d = dict(saved)
  if version < 2:
    d = {**{k: v for k, v in LEGACY_VALUES.items() if k not in d}, **d}
    if d.get('method') == 'hint_relic' and all(d.get(k) == v for k, v in _V1_SUPERVISED.items()):
      d['method'] = 'hint_relic_supervised'
    try:
      d.update(registry.method(d.get('method')).overrides)
    except (KeyError, TypeError):
      pass
  d['schema'] = CONFIG_SCHEMA
  return d


# Settings that may differ between a run and its resumption (the rest must match).
# `remat` changes how the gradient is computed, not what it is.
RESUMABLE_DIFFERENCES = {'steps', 'out', 'cache_dir', 'prefetch', 'log_every', 'remat',
                         'grad_terms_every',
                         'length_groups', 'sampling_processes', 'log'}


def setting_group(key: str) -> Optional[str]:
  """The group a setting belongs to (`Rule.group`), None for one every run reads."""
  field = {f.name: f for f in dataclasses.fields(TrainConfig)}.get(key)
  return field.metadata['rule'].group if field is not None else None


def method_reads(method: Optional[str], group: str) -> bool:
  """Whether runs of `method` read the settings of `group` (an unknown method, e.g.
  one registered by a module not imported now, is taken to read everything)."""
  try:
    return group in registry.method(method).reads
  except KeyError:
    return True


def config_conflicts(saved: dict, new: 'TrainConfig') -> list[str]:
  """The differences ('key: saved ..., now ...') between a saved configuration
  (migrated to today's schema) and `new` as it would train (`as_trained`) that
  make them different runs: not RESUMABLE_DIFFERENCES, nor settings neither
  run's method reads."""
  current = new.as_trained().to_json()
  # A setting added after the run was saved had its default value then (or, for
  # the LEGACY_VALUES keys, the value it had before the setting existed).
  saved = migrate(saved)
  saved = {**TrainConfig().to_json(), **saved}
  # A setting neither run's method reads (Hint-ReLIC's, for two baseline runs) does
  # not make them different runs, whatever it says.
  def read_by_either(key: str) -> bool:
    group = setting_group(key)
    return group is None or any(method_reads(m, group)
                                for m in (saved.get('method'), current['method']))
  return [f'{k}: saved {saved.get(k)!r}, now {current.get(k)!r}'
          for k in sorted(set(saved) | set(current))
          if k not in RESUMABLE_DIFFERENCES and saved.get(k) != current.get(k)
          and read_by_either(k)]


def load_config_file(path: str) -> dict:
  """The JSON object in `path`; ConfigError (naming the file) if it is unreadable."""
  try:
    with open(path, 'rb') as f:
      d = json.loads(f.read().decode('utf-8'))
  except (OSError, ValueError) as e:
    why = e.strerror if isinstance(e, OSError) and e.strerror else e.__class__.__name__
    raise ConfigError(f'cannot read configuration {path}: {why}') from e
  if not isinstance(d, dict):
    raise ConfigError(f'cannot read configuration {path}: not a JSON object of settings')
  return d


def default_out(algorithm: str, method: str, seed: int) -> str:
  """The run directory of a run that names none (`nar train`, `nar run`):
  runs/<algorithm>-<method>-s<seed>, several algorithms joined by '+'."""
  name = '+'.join(x.strip() for x in str(algorithm).split(','))
  return f'runs/{name}-{method}-s{seed}'


def load_run_file(path: str) -> tuple['TrainConfig', dict]:
  """A configuration file given to `nar run`, read one way whatever it omits:
  `algorithm` and `method` are required; any other setting it does not name
  takes the value a saved run had before the setting existed (LEGACY_VALUES),
  else its default (`nar train --list-settings`), and `out` the directory
  `nar train` would choose (`default_out`).

  Returns:
    (the validated configuration, {setting: value taken} for each one the file
    does not name), for the caller to show before anything runs.
  Raises:
    ConfigError naming the file.
  """
  d = load_config_file(path)
  try:
    config = TrainConfig.from_json(d)
  except ConfigError as e:
    raise ConfigError(str(e) if path in str(e) else f'{path}: {e}') from e
  if 'out' not in d:
    config.out = default_out(config.algorithm, config.method, config.seed)
  taken = {f.name: getattr(config, f.name) for f in dataclasses.fields(TrainConfig)
           if f.name not in d}
  return config, {k: list(v) if isinstance(v, tuple) else v for k, v in taken.items()}


def load_config(path: str) -> 'TrainConfig':
  """`TrainConfig.from_json` of the file `path`; its errors name the file."""
  try:
    return TrainConfig.from_json(load_config_file(path))
  except ConfigError as e:
    if path in str(e):
      raise
    raise ConfigError(f'{path}: {e}') from e
