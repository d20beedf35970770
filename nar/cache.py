"""On-disk cache of generated validation/test sets.

One `.npz` per split plus a JSON manifest holding the key (algorithm, split,
size, seed, number of samples), the dm-clrs version and the SHA-256 of the
`.npz`. A file whose manifest is missing, whose checksum or key differs, or that
was written by another dm-clrs version is reported and rebuilt, never used.
Files are written with `nar.storage.atomic_write` (a unique temporary name, then a
rename), so a killed writer leaves no half-written entry behind and processes
sharing the cache never share a temporary file. A cache that cannot be written
(disk full, read-only) is reported and the run goes on without it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from typing import NamedTuple, Optional

import numpy as np

from nar import clrs_import  # noqa: F401  (quiet TensorFlow before dm-clrs loads it)
import clrs

from nar import storage
from nar.batching import Batch
from nar.digest import sha256_file

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


def save(cache_dir: str, key: SplitKey, batch: Batch) -> Optional[str]:
  """Writes the entry; None (and a warning) when the cache cannot be written."""
  data = {'lengths': batch.lengths, 'node_mask': batch.node_mask}
  for group in ('inputs', 'hints', 'outputs'):
    for name, x in getattr(batch, group).items():
      data[f'{group}/{name}'] = x
  npz_path = os.path.join(cache_dir, key.stem + '.npz')
  buffer = io.BytesIO()
  np.savez(buffer, **data)
  raw = buffer.getvalue()
  manifest = {'format': FORMAT_VERSION, 'key': key._asdict(), 'dm_clrs': clrs.__version__,
              'sha256': hashlib.sha256(raw).hexdigest()}
  try:
    try:
      os.makedirs(cache_dir, exist_ok=True)
    except OSError as e:
      raise storage.storage_error(cache_dir, e, 'create') from e
    storage.atomic_write(npz_path, raw)
    storage.atomic_write_json(npz_path[:-4] + '.json', manifest)
  except storage.StorageError as e:
    print(f'warning: {str(e).split("; ")[0]}; going on without caching this split',
          file=sys.stderr, flush=True)
    return None
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
  except (OSError, ValueError, AttributeError) as e:
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
  print(f'warning: cache entry {npz_path} ignored and rebuilt: {problem}', file=sys.stderr,
        flush=True)
  return None
