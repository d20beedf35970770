"""On-disk cache of generated validation/test sets.

One `.npz` per split plus a JSON manifest holding the key (algorithm, split,
size, seed, number of samples), the dm-clrs version and the SHA-256 of the
`.npz`. A file whose manifest is missing, whose checksum or key differs, or that
was written by another dm-clrs version is reported and rebuilt, never used.
Files are written to a temporary name and renamed, so a killed writer leaves no
half-written entry behind.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import NamedTuple, Optional

import numpy as np

from nar import clrs_import  # noqa: F401  (quiet TensorFlow before dm-clrs loads it)
import clrs

from nar.batching import Batch
from nar.digest import sha256_file

log = logging.getLogger(__name__)
FORMAT_VERSION = 1


class SplitKey(NamedTuple):
  algorithm: str
  split: str
  size: int
  seed: int
  num_samples: int

  @property
  def stem(self) -> str:
    return (f'{self.algorithm}-{self.split}-n{self.size}-seed{self.seed}-'
            f'{self.num_samples}-clrs{clrs.__version__}')


def _atomic_write(path: str, write) -> None:
  directory = os.path.dirname(path) or '.'
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-', suffix=os.path.basename(path))
  os.close(fd)
  try:
    write(tmp)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def save(cache_dir: str, key: SplitKey, batch: Batch) -> str:
  os.makedirs(cache_dir, exist_ok=True)
  data = {'lengths': batch.lengths, 'node_mask': batch.node_mask}
  for group in ('inputs', 'hints', 'outputs'):
    for name, x in getattr(batch, group).items():
      data[f'{group}/{name}'] = x
  npz_path = os.path.join(cache_dir, key.stem + '.npz')

  def write_npz(tmp):
    with open(tmp, 'wb') as f:
      np.savez(f, **data)
  _atomic_write(npz_path, write_npz)
  manifest = {'format': FORMAT_VERSION, 'key': key._asdict(), 'dm_clrs': clrs.__version__,
              'sha256': sha256_file(npz_path)}

  def write_manifest(tmp):
    with open(tmp, 'w') as f:
      json.dump(manifest, f, indent=1)
  _atomic_write(npz_path[:-4] + '.json', write_manifest)
  return npz_path


def load(cache_dir: str, key: SplitKey) -> Optional[Batch]:
  """The cached batch, or None (and a warning) when absent, stale or corrupt."""
  npz_path = os.path.join(cache_dir, key.stem + '.npz')
  manifest_path = npz_path[:-4] + '.json'
  if not os.path.exists(npz_path):
    return None
  problem = None
  try:
    with open(manifest_path) as f:
      manifest = json.load(f)
    if manifest.get('format') != FORMAT_VERSION:
      problem = 'written by another cache format'
    elif manifest.get('dm_clrs') != clrs.__version__:
      problem = f"written by dm-clrs {manifest.get('dm_clrs')}, this is {clrs.__version__}"
    elif manifest.get('key') != key._asdict():
      problem = 'its key does not match'
    elif manifest.get('sha256') != sha256_file(npz_path):
      problem = 'checksum mismatch (truncated or corrupted)'
  except (OSError, ValueError) as e:
    problem = f'unreadable manifest ({e.__class__.__name__})'
  if problem is None:
    try:
      with np.load(npz_path) as z:
        groups = {'inputs': {}, 'hints': {}, 'outputs': {}}
        for name in z.files:
          if '/' in name:
            g, k = name.split('/', 1)
            groups[g][k] = z[name]
        return Batch(inputs=groups['inputs'], hints=groups['hints'], outputs=groups['outputs'],
                     lengths=z['lengths'], node_mask=z['node_mask'])
    except Exception as e:  # pylint: disable=broad-except
      problem = f'unreadable data ({e.__class__.__name__})'
  log.warning('cache entry %s ignored and rebuilt: %s', npz_path, problem)
  print(f'warning: cache entry {npz_path} ignored and rebuilt: {problem}')
  return None
