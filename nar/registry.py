"""Extension points by name: training methods and processors.

The names live here, in the bottom layer (no dm-clrs, no JAX), so that a
configuration is validated before anything heavy loads; an implementation is
imported only when a run needs it.

Adding a training method (see `nar.methods.Method` for the interface):

    from nar.registry import register_method
    register_method('my_method', 'my_package.my_module:MyMethod',
                    description='one line for --help')

Adding a processor (dm-clrs's `ProcessorFactory` contract: `factory(out_size)`
returns a `clrs.processors.Processor`):

    from nar.registry import register_processor
    register_processor('my_processor', my_factory, returns_edges=False)

Then `nar train --method my_method --processor my_processor` (in a process that
imported the registering module, e.g. your own entry point calling
`nar.cli.main`).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping, Optional, Union

from nar.catalogue import PROCESSOR_KINDS

Target = Union[str, Callable[..., Any]]


@dataclasses.dataclass(frozen=True)
class MethodEntry:
  """A training method.

  Attributes:
    name: the `--method` value.
    target: `'module:attribute'` or the object itself: a callable
      `(config, spec) -> Method` (normally a `nar.methods.Method` subclass).
    overrides: configuration values the method fixes (how an ablation is a
      method: `twins_only` is Hint-ReLIC with `relic_contrast=False`).
    description: one line, shown by `--help`.
    reads: the settings groups the method reads besides the common settings
      (`nar.config.Rule.group`, e.g. 'hint_relic'); two runs differing only in
      a group neither method reads are the same run.
    control: a control of the baseline (e.g. `size_matched`): `nar report`
      compares the other methods against it, as against the baseline.
    multi_task: whether it trains several algorithms at once (its class's
      `supports_multi_task`, known here so a command refuses before importing it).
  """
  name: str
  target: Target
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  description: str = ''
  reads: tuple = ()
  control: bool = False
  multi_task: bool = True

  def factory(self) -> Callable[..., Any]:
    return _resolve(self.target)


@dataclasses.dataclass(frozen=True)
class ProcessorEntry:
  """A processor added to dm-clrs's kinds: `factory(out_size)` -> a dm-clrs
  `Processor` module; `returns_edges`: whether it returns triplet edge messages
  (a `[B, N, N, H]` second output the decoders read)."""
  name: str
  factory: Callable[[int], Any]
  returns_edges: bool = False


_METHODS: dict[str, MethodEntry] = {}
_PROCESSORS: dict[str, ProcessorEntry] = {}


def _resolve(target: Target):
  if not isinstance(target, str):
    return target
  module, _, attr = target.partition(':')
  return getattr(importlib.import_module(module), attr)


def register_method(name: str, target: Target, *, overrides: Optional[Mapping] = None,
                    description: str = '', reads: tuple = (), control: bool = False,
                    multi_task: bool = True) -> MethodEntry:
  """Registers a training method under `name` (a name is registered once)."""
  if not name or not isinstance(name, str):
    raise ValueError(f'a method name must be a non-empty string, got {name!r}')
  if name in _METHODS:
    raise ValueError(f'method {name!r} is registered already')
  entry = MethodEntry(name, target, dict(overrides or {}), description, tuple(reads), control,
                      multi_task)
  _METHODS[name] = entry
  return entry


def methods() -> Mapping[str, MethodEntry]:
  return dict(_METHODS)


def method(name: str) -> MethodEntry:
  if name not in _METHODS:
    raise KeyError(name)
  return _METHODS[name]


def register_processor(name: str, factory: Callable[[int], Any], *,
                       returns_edges: bool = False) -> ProcessorEntry:
  """Registers a processor kind beside dm-clrs's (a name is registered once)."""
  if name in PROCESSOR_KINDS or name in _PROCESSORS:
    raise ValueError(f'processor {name!r} exists already')
  entry = ProcessorEntry(name, factory, returns_edges)
  _PROCESSORS[name] = entry
  return entry


def processors() -> Mapping[str, ProcessorEntry]:
  return dict(_PROCESSORS)


def processor_kinds() -> tuple[str, ...]:
  """dm-clrs's kinds and the registered ones."""
  return tuple(PROCESSOR_KINDS) + tuple(_PROCESSORS)


# The built-in methods.
register_method('baseline', 'nar.methods:Baseline',
                description='the CLRS supervised loss on fresh samples (dm-clrs examples/run.py)')
register_method('hint_relic', 'nar.hint_relic:HintReLIC', reads=('hint_relic',),
                description="Hint-ReLIC, the paper's objective: supervised loss on the originals + "
                            'ReLIC invariance on one-step twins from the same state')
register_method('hint_relic_supervised', 'nar.hint_relic:HintReLIC',
                overrides={'relic_beta': 1.0, 'relic_twin': 'rollout'}, reads=('hint_relic',),
                description='variant [ours]: twins also supervised, twin side from its own rollout, '
                            '+ the invariance')
register_method('twins_only', 'nar.hint_relic:HintReLIC',
                overrides={'relic_contrast': False, 'relic_beta': 1.0, 'relic_twin': 'rollout'},
                reads=('hint_relic',),
                description='ablation: twins supervised only (data augmentation), no invariance')
register_method('contrast_no_kl', 'nar.hint_relic:HintReLIC', overrides={'relic_alpha': 0.0},
                reads=('hint_relic',),
                description="ablation: the paper's objective without the KL invariance penalty")
register_method('size_matched', 'nar.size_matched:SizeMatched', reads=('hint_relic',),
                control=True, multi_task=False,
                description="control: the baseline plus fresh samples at the sizes of Hint-ReLIC's "
                            'twins (as many as the supervised variant supervises)')
