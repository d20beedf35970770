"""Crash-safe checkpoints of a training state.

A checkpoint is a directory `step-<k>/` with `state.npz` (every array leaf of the
state pytree, flattened) and `manifest.json` (tree structure, step, metadata and
the SHA-256 of `state.npz`). It is written to a temporary directory and renamed
in one step, so a killed writer never leaves a half checkpoint under a real name.
On load, a checkpoint whose manifest, checksum or structure is wrong is reported
and the previous good one is used. The last `keep` checkpoints and the best one
(`best/`) are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from typing import Any, Optional

import jax
import numpy as np

MANIFEST = 'manifest.json'
STATE = 'state.npz'


class CheckpointError(RuntimeError):
  """No usable checkpoint (all missing or corrupt)."""


def sha256_file(path: str) -> str:
  """Hex SHA-256 of a file's bytes (integrity checks of checkpoints and caches)."""
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      h.update(block)
  return h.hexdigest()


def _fsync_dir(path: str) -> None:
  try:
    fd = os.open(path, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)
  except OSError:
    pass


def save(directory: str, name: str, state: Any, metadata: dict) -> str:
  """Writes `state` (a pytree of arrays) atomically as `directory/name`."""
  os.makedirs(directory, exist_ok=True)
  leaves, treedef = jax.tree_util.tree_flatten(state)
  tmp = tempfile.mkdtemp(dir=directory, prefix='.tmp-')
  try:
    state_path = os.path.join(tmp, STATE)
    with open(state_path, 'wb') as f:
      np.savez(f, **{f'leaf_{i}': np.asarray(x) for i, x in enumerate(leaves)})
      f.flush()
      os.fsync(f.fileno())
    manifest = {'treedef': str(treedef), 'num_leaves': len(leaves),
                'sha256': sha256_file(state_path), 'metadata': metadata}
    with open(os.path.join(tmp, MANIFEST), 'w') as f:
      json.dump(manifest, f, indent=1)
      f.flush()
      os.fsync(f.fileno())
    final = os.path.join(directory, name)
    if os.path.exists(final):
      old = final + '.old'
      shutil.rmtree(old, ignore_errors=True)
      os.replace(final, old)
      os.replace(tmp, final)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.replace(tmp, final)
    _fsync_dir(directory)
    return final
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def verify(path: str, template: Any = None) -> Optional[str]:
  """None if the checkpoint at `path` is intact (and matches `template`'s
  structure when given), else the reason it is not."""
  try:
    with open(os.path.join(path, MANIFEST)) as f:
      manifest = json.load(f)
  except (OSError, ValueError) as e:
    return f'manifest unreadable ({e.__class__.__name__})'
  state_path = os.path.join(path, STATE)
  if not os.path.exists(state_path):
    return 'state file missing'
  if sha256_file(state_path) != manifest.get('sha256'):
    return 'checksum mismatch (truncated or corrupted)'
  if template is not None:
    _, treedef = jax.tree_util.tree_flatten(template)
    if str(treedef) != manifest.get('treedef'):
      return 'state structure differs from this configuration'
  return None


def load(path: str, template: Any) -> tuple[Any, dict]:
  """Loads the checkpoint at `path` into the structure of `template`."""
  problem = verify(path, template)
  if problem:
    raise CheckpointError(f'checkpoint {path} is unusable: {problem}')
  with open(os.path.join(path, MANIFEST)) as f:
    manifest = json.load(f)
  t_leaves, treedef = jax.tree_util.tree_flatten(template)
  with np.load(os.path.join(path, STATE)) as z:
    leaves = [z[f'leaf_{i}'] for i in range(manifest['num_leaves'])]
  for a, b in zip(leaves, t_leaves):
    if np.shape(a) != np.shape(b):
      raise CheckpointError(f'checkpoint {path} is unusable: array shapes differ from this '
                            'configuration')
  return jax.tree_util.tree_unflatten(treedef, leaves), manifest['metadata']


def step_dirs(directory: str) -> list[tuple[int, str]]:
  """(step, path) of the `step-<k>` checkpoints, newest first."""
  if not os.path.isdir(directory):
    return []
  out = []
  for name in os.listdir(directory):
    if name.startswith('step-') and name[5:].isdigit():
      out.append((int(name[5:]), os.path.join(directory, name)))
  return sorted(out, reverse=True)


def latest_good(directory: str, template: Any, report=print) -> Optional[tuple[Any, dict, str]]:
  """The newest intact step checkpoint; corrupt ones are reported and skipped."""
  for _, path in step_dirs(directory):
    problem = verify(path, template)
    if problem is None:
      state, meta = load(path, template)
      return state, meta, path
    report(f'warning: checkpoint {path} skipped: {problem}; trying the previous one')
  return None


def prune(directory: str, keep: int) -> None:
  for _, path in step_dirs(directory)[keep:]:
    shutil.rmtree(path, ignore_errors=True)
