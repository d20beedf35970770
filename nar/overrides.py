"""`--set KEY=VALUE` settings of the command line, for `nar train` and `nar sweep`.

Below both (it needs only `nar.config`), so that the experiments do not import
the command line that registers them.
"""

from __future__ import annotations

import dataclasses
import json

from nar.config import ConfigError, TrainConfig


def parse_overrides(items: list[str]) -> dict:
  """`--set KEY=VALUE` items -> {key: value}; values are JSON when they parse."""
  fields = {f.name for f in dataclasses.fields(TrainConfig)}
  out = {}
  for item in items:
    if '=' not in item:
      raise ConfigError(f'--set expects KEY=VALUE, got {item!r}')
    k, v = item.split('=', 1)
    if k not in fields:
      raise ConfigError(f'unknown configuration key {k!r}; known: {", ".join(sorted(fields))}')
    try:
      out[k] = json.loads(v)
    except (ValueError, RecursionError):
      out[k] = v
  return out
