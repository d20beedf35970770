"""Crash-safe checkpoints of a training state.

A checkpoint is a directory `step-<k>/` with `state.npz` (every array leaf of the
state pytree, flattened) and `manifest.json` (tree structure, step, metadata and
the SHA-256 of `state.npz`). It is written to a temporary directory, read back
and verified, and renamed in one step (`nar.storage`), so a killed writer or a
full disk never leaves a half checkpoint under a real name. On load, a checkpoint
whose manifest, checksum or structure is wrong is reported and the previous good
one is used. The last `keep` step checkpoints are kept, and so are the best one
(`best/`) and the step checkpoint of the best step (a second copy of the best
parameters, from which a corrupt `best/` is re-established).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from typing import Any, Optional

import jax
import numpy as np

from nar import storage
from nar.digest import sha256_file

MANIFEST = 'manifest.json'
STATE = 'state.npz'


class CheckpointError(RuntimeError):
  """No usable checkpoint (all missing or corrupt)."""


def save(directory: str, name: str, state: Any, metadata: dict) -> str:
  """Writes `state` (a pytree of arrays) atomically as `directory/name`, and reads
  it back before it takes that name: a checkpoint that does not verify is never
  put in place (`storage.StorageError`)."""
  leaves, treedef = jax.tree_util.tree_flatten(state)
  buffer = io.BytesIO()
  np.savez(buffer, **{f'leaf_{i}': np.asarray(x) for i, x in enumerate(leaves)})
  data = buffer.getvalue()
  manifest = {'treedef': str(treedef), 'num_leaves': len(leaves),
              'sha256': hashlib.sha256(data).hexdigest(), 'metadata': metadata}
  final = os.path.join(directory, name)
  tmp = storage.mkdtemp(directory)
  try:
    storage.write_file(os.path.join(tmp, STATE), data, os.path.join(final, STATE))
    storage.write_file(os.path.join(tmp, MANIFEST), storage.to_json(manifest),
                       os.path.join(final, MANIFEST))
    problem = verify(tmp)
    if problem:
      raise storage.StorageError(f'checkpoint {final} did not read back intact after writing '
                                 f'({problem}); the previous checkpoints are kept', final)
    storage.replace_dir(tmp, final)
    return final
  finally:
    storage.remove_quietly(tmp)


def recover(directory: str, name: str) -> bool:
  """Puts back a checkpoint that a crash inside `save` left as `<name>.old`."""
  return storage.recover_dir(os.path.join(directory, name))


def read_metadata(path: str) -> Optional[dict]:
  """The metadata of the checkpoint at `path` (unverified), None if unreadable."""
  try:
    with open(os.path.join(path, MANIFEST)) as f:
      meta = json.load(f).get('metadata')
  except (OSError, ValueError, AttributeError):
    return None
  return meta if isinstance(meta, dict) else None


def verify(path: str, template: Any = None) -> Optional[str]:
  """None if the checkpoint at `path` is intact (and matches `template`'s
  structure when given), else the reason it is not."""
  try:
    with open(os.path.join(path, MANIFEST)) as f:
      manifest = json.load(f)
  except (OSError, ValueError) as e:
    return f'manifest unreadable ({e.__class__.__name__})'
  if not isinstance(manifest, dict):
    return 'manifest unreadable (not a checkpoint manifest)'
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
  t_leaves, treedef = jax.tree_util.tree_flatten(template)
  try:
    with open(os.path.join(path, MANIFEST)) as f:
      manifest = json.load(f)
    with np.load(os.path.join(path, STATE)) as z:
      leaves = [z[f'leaf_{i}'] for i in range(manifest['num_leaves'])]
    metadata = manifest['metadata']
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(f'checkpoint {path} is unusable: unreadable ({e.__class__.__name__})'
                          ) from e
  if len(leaves) != len(t_leaves):
    raise CheckpointError(f'checkpoint {path} is unusable: state structure differs from this '
                          'configuration')
  for a, b in zip(leaves, t_leaves):
    if np.shape(a) != np.shape(b):
      raise CheckpointError(f'checkpoint {path} is unusable: array shapes differ from this '
                            'configuration')
  return jax.tree_util.tree_unflatten(treedef, leaves), metadata


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


def recover_all(directory: str) -> list[str]:
  """Puts back every checkpoint a crash inside `save` left as `<name>.old`, and
  removes the temporary directories of killed writers; the names put back."""
  if not os.path.isdir(directory):
    return []
  back = [name[:-4] for name in sorted(os.listdir(directory))
          if name.endswith('.old') and recover(directory, name[:-4])]
  storage.remove_stale_temporaries(directory)
  return back


def prune(directory: str, keep: int, protect: Optional[int] = None) -> None:
  """Removes all but the newest `keep` step checkpoints, except step `protect`
  (the best step: the second copy of the best parameters)."""
  for step, path in step_dirs(directory)[keep:]:
    if step != protect:
      shutil.rmtree(path, ignore_errors=True)
