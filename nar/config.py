"""The training configuration: one dataclass, validated, overridable from the CLI."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

from nar import registry
from nar.catalogue import CLRS30_ALGORITHMS
PRECISIONS = ('float32', 'bfloat16')
# How Hint-ReLIC computes the twin side (see nar.hint_relic): 'step', one
# processor step per valid pair from the original's latent; 'rollout', the
# twin's whole trajectory through the network.
RELIC_TWIN_MODES = ('step', 'rollout')

# Settings added after runs were saved whose value in those runs was not today's
# default: an old config.json without the key is read with this value.
LEGACY_VALUES = {'relic_twin': 'rollout'}


class ConfigError(ValueError):
  """A setting that is unknown, of the wrong type or out of range."""


@dataclasses.dataclass
class TrainConfig:
  algorithm: str = 'bfs'
  method: str = 'baseline'
  steps: int = 10_000
  batch_size: int = 32
  hidden: int = 128
  processor: str = 'triplet_gmpnn'
  seed: int = 42
  learning_rate: float = 1e-3
  grad_clip: float = 1.0
  train_sizes: tuple = (4, 7, 11, 13, 16)
  eval_every: int = 500            # validation (and checkpoint) cadence, in steps
  log_every: int = 10
  eval_batch_size: int = 32
  test_size: int = 64
  val_size: Optional[int] = None   # default: 16 (string matchers 20)
  test_samples: Optional[int] = None  # default: 32 x the algorithm's multiplier
  val_samples: Optional[int] = None   # default: 64 x the algorithm's multiplier
  keep_checkpoints: int = 3
  out: str = 'runs/default'
  cache_dir: Optional[str] = None  # default: $NAR_CACHE or ~/.cache/nar-hint-relic
  prefetch: int = 4
  precision: str = 'float32'      # 'bfloat16': mixed precision (float32 params and losses)
  # Hint-ReLIC (METHOD.md section 3); ignored by the baseline.
  relic_lambda: float = 0.1       # weight of contrast + alpha * KL
  relic_alpha: float = 1.0        # weight of the KL invariance penalty
  relic_beta: float = 1.0         # supervision of the augmented twin
  # Chosen on insertion_sort validation (cpu protocol, 3 seeds, results/tuning): 0.5
  # scored 95.6 against 93.5 for 0.1 (lambda 0.1); lambda 1.0 was lower at either.
  relic_temperature: float = 0.5
  relic_critic_hidden: int = 128
  relic_contrast: bool = True     # False: twins supervised only (data augmentation)
  relic_hints: str = 'all'        # comma-separated hint names to regularise, or 'all'
  augmentations: int = 1          # twins per sample
  relic_pairs: int = 4            # valid step pairs per twin used by the contrast
  relic_twin: str = 'rollout'     # 'step' | 'rollout': how the twin side is computed

  def validate(self) -> 'TrainConfig':
    if self.algorithm not in CLRS30_ALGORITHMS:
      raise ConfigError(f"unknown algorithm '{self.algorithm}'; choose one of: "
                        f"{', '.join(CLRS30_ALGORITHMS)}")
    if self.method not in registry.methods():
      raise ConfigError(f"unknown method '{self.method}'; choose one of: "
                        f"{', '.join(registry.methods())}")
    if self.processor not in registry.processor_kinds():
      raise ConfigError(f"unknown processor '{self.processor}'; choose one of: "
                        f"{', '.join(registry.processor_kinds())}")
    for name in ('steps', 'batch_size', 'hidden', 'eval_every', 'log_every', 'eval_batch_size',
                 'test_size', 'keep_checkpoints', 'prefetch', 'relic_critic_hidden',
                 'augmentations', 'relic_pairs'):
      v = getattr(self, name)
      if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise ConfigError(f'{name} must be a positive integer, got {v!r}')
    for name in ('val_size', 'test_samples', 'val_samples'):
      v = getattr(self, name)
      if v is not None and (not isinstance(v, int) or v <= 0):
        raise ConfigError(f'{name} must be a positive integer, got {v!r}')
    for name in ('learning_rate', 'relic_temperature', 'grad_clip', 'relic_lambda',
                 'relic_alpha', 'relic_beta'):
      v = getattr(self, name)
      if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f'{name} must be a number, got {v!r}')
    for name in ('learning_rate', 'relic_temperature'):
      if not getattr(self, name) > 0:
        raise ConfigError(f'{name} must be > 0, got {getattr(self, name)!r}')
    for name in ('grad_clip', 'relic_lambda', 'relic_alpha', 'relic_beta'):
      if getattr(self, name) < 0:
        raise ConfigError(f'{name} must be >= 0, got {getattr(self, name)!r}')
    for name in ('relic_contrast',):
      if not isinstance(getattr(self, name), bool):
        raise ConfigError(f'{name} must be true or false, got {getattr(self, name)!r}')
    if self.relic_twin not in RELIC_TWIN_MODES:
      raise ConfigError(f"unknown relic_twin {self.relic_twin!r}; choose one of: "
                        f"{', '.join(RELIC_TWIN_MODES)}")
    if self.precision not in PRECISIONS:
      raise ConfigError(f"unknown precision {self.precision!r}; choose one of: "
                        f"{', '.join(PRECISIONS)}")
    if not isinstance(self.relic_hints, str):
      raise ConfigError(f'relic_hints must be "all" or comma-separated names, got {self.relic_hints!r}')
    if not isinstance(self.train_sizes, (list, tuple)) or not all(
        isinstance(x, int) and not isinstance(x, bool) for x in self.train_sizes):
      raise ConfigError(f'train_sizes must be a list of integers, got {self.train_sizes!r}')
    if not self.train_sizes or any(int(s) < 4 for s in self.train_sizes):
      raise ConfigError(f'train_sizes must be sizes >= 4, got {self.train_sizes!r}')
    if self.test_size < 4:
      raise ConfigError(f'test_size must be >= 4, got {self.test_size}')
    self.train_sizes = tuple(int(s) for s in self.train_sizes)
    return self

  def resolved_cache_dir(self) -> str:
    return self.cache_dir or os.environ.get('NAR_CACHE') or os.path.expanduser(
        '~/.cache/nar-hint-relic')

  def to_json(self) -> dict:
    d = dataclasses.asdict(self)
    d['train_sizes'] = list(self.train_sizes)
    return d

  @classmethod
  def from_json(cls, d: dict) -> 'TrainConfig':
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
      raise ConfigError(f'unknown configuration keys: {", ".join(unknown)}')
    d = migrate(d)
    if 'train_sizes' in d:
      d['train_sizes'] = tuple(d['train_sizes'])
    return cls(**d).validate()


def migrate(saved: dict) -> dict:
  """A saved configuration in today's schema: keys added since get the value
  the saved run had (LEGACY_VALUES), the rest of a missing key's meaning is its
  default."""
  return {**{k: v for k, v in LEGACY_VALUES.items() if k not in saved}, **saved}


# Settings that may differ between a run and its resumption (the rest must match).
RESUMABLE_DIFFERENCES = {'steps', 'out', 'cache_dir', 'prefetch', 'log_every'}


def hint_relic_setting(key: str) -> bool:
  """Settings the baseline ignores (see the TrainConfig fields)."""
  return key.startswith('relic_') or key == 'augmentations'


def config_conflicts(saved: dict, new: 'TrainConfig') -> list[str]:
  current = new.to_json()
  # A setting added after the run was saved had its default value then (or, for
  # the LEGACY_VALUES keys, the value it had before the setting existed).
  defaults = TrainConfig().to_json()
  saved = migrate({**{k: v for k, v in defaults.items()
                      if k not in saved and k not in LEGACY_VALUES}, **saved})
  # A baseline run is the same run whatever Hint-ReLIC's settings (or their defaults) say.
  both_baseline = saved.get('method') == current['method'] == 'baseline'
  return [f'{k}: saved {saved.get(k)!r}, now {current.get(k)!r}'
          for k in sorted(set(saved) | set(current))
          if k not in RESUMABLE_DIFFERENCES and saved.get(k) != current.get(k)
          and not (both_baseline and hint_relic_setting(k))]


def load_config_file(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(f'cannot read configuration {path}: {e}') from e
