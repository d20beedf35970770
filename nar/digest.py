"""SHA-256 of a file, for the integrity checks of cached data sets and checkpoints.

In the bottom layer so that the data cache (`nar.cache`) need not import the
training layer's `nar.checkpoint` for it.
"""

from __future__ import annotations

import hashlib


def sha256_file(path: str) -> str:
  """Hex SHA-256 of a file's bytes (integrity checks of checkpoints and caches)."""
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      h.update(block)
  return h.hexdigest()
