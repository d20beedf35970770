"""Which code and which machine computed a run: recorded in its results.json so
that a report pairs only runs that compare (one backend, one code version)."""

from __future__ import annotations

import os
import subprocess
from typing import Optional

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _git(*args: str) -> Optional[str]:
  try:
    done = subprocess.run(['git', '-C', _PACKAGE_ROOT, *args], capture_output=True, text=True,
                          timeout=10, check=False)
  except (OSError, subprocess.SubprocessError):
    return None
  return done.stdout.strip() if done.returncode == 0 else None


def code_version() -> dict:
  """The version of this package's code.

  Returns:
    {'commit': the git commit of the checkout nar runs from (None outside a git
    checkout, e.g. an installed wheel), 'modified': whether tracked files differ
    from that commit (None when unknown), 'package': the package version}.
    Untracked files (run directories, results) do not count as modified: they
    are not code.
  """
  from importlib import metadata
  try:
    package = metadata.version('nar-hint-relic')
  except metadata.PackageNotFoundError:
    package = None
  commit = _git('rev-parse', 'HEAD')
  status = _git('status', '--porcelain', '--untracked-files=no') if commit else None
  return {'commit': commit, 'modified': None if status is None else bool(status),
          'package': package}
