"""Crash-safe writes: every byte the trainer, the caches and the sweep save passes here.

* `atomic_write(path, data)`: the file is written under a unique temporary name in
  its own directory, flushed to disk, and renamed over `path` in one step, so a
  crash, a kill or a full disk at any byte leaves either the old content or the
  new, never a torn file; two processes writing the same path never share a
  temporary file.
* `append_line(path, text)`: one record appended to a JSON-lines file with one
  `write`; when that write fails (disk full), what it wrote is cut off again, so
  the file ends with a whole record. A process killed during the write can still
  leave a torn last line: `read_jsonl` reports it and readers skip it (resume
  rewrites the file without it).
* `replace_dir(tmp, final)`: a directory written completely under a temporary
  name takes `final`'s place; a crash between the two renames leaves
  `final.old`, which `recover_dir` puts back.

An `OSError` of any of these (disk full, permission denied, read-only file
system...) becomes a `StorageError` whose one-line message names the path and
the cause; nothing already saved is touched.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from typing import Optional, Union

TMP_PREFIX = '.tmp-'

_CAUSES = {
    errno.ENOSPC: 'no space left on the device (disk full)',
    errno.EDQUOT: 'disk quota exceeded',
    errno.EACCES: 'permission denied',
    errno.EPERM: 'operation not permitted',
    errno.EROFS: 'read-only file system',
}
_FULL = (errno.ENOSPC, errno.EDQUOT)
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


class StorageError(RuntimeError):
  """A file could not be written; the message names the path and the cause."""

  def __init__(self, message: str, path: str = '', errno_: Optional[int] = None):
    super().__init__(message)
    self.path = path
    self.errno = errno_


def cause(e: OSError) -> str:
  return _CAUSES.get(e.errno) or e.strerror or e.__class__.__name__


def storage_error(path: str, e: OSError, action: str = 'write') -> StorageError:
  what = f'cannot {action} {path}: {cause(e)}'
  if e.errno in _FULL:
    what += '; nothing saved before is lost: free some space and run the same command again'
  elif e.errno in _DENIED:
    what += ('; nothing saved before is lost: make it writable (or choose another '
             'directory) and run the same command again')
  return StorageError(what, path, e.errno)


def _umask() -> int:
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


_MODE = 0o666 & ~_umask()


def _write_bytes(fd: int, data: bytes, target: str) -> None:
  """Writes all of `data` to the file descriptor `fd`, which is (or will be renamed
  to) `target`: the one place saved bytes reach a file (the fault-injection
  tests replace it)."""
  view = memoryview(data)
  while view:
    n = os.write(fd, view)
    view = view[n:]


def _encode(data: Union[bytes, str]) -> bytes:
  return data.encode('utf-8') if isinstance(data, str) else bytes(data)


def fsync_dir(path: str) -> None:
  try:
    fd = os.open(path or '.', os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def remove_quietly(path: str) -> None:
  with contextlib.suppress(OSError):
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path, ignore_errors=True)
    else:
      os.remove(path)


def write_file(path: str, data: Union[bytes, str], shown_as: Optional[str] = None) -> None:
  """Writes a new file that no reader sees yet, inside a temporary directory that
  is renamed to its real name when complete; errors name `shown_as`, the file's
  path after that rename."""
  data = _encode(data)
  shown_as = shown_as or path
  try:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _MODE)
  except OSError as e:
    raise storage_error(shown_as, e) from e
  try:
    _write_bytes(fd, data, shown_as)
    os.fsync(fd)
  except OSError as e:
    raise storage_error(shown_as, e) from e
  finally:
    os.close(fd)


def atomic_write(path: str, data: Union[bytes, str]) -> None:
  """Replaces `path` by `data`: old or new content whatever happens (see module doc)."""
  data = _encode(data)
  directory = os.path.dirname(path) or '.'
  try:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=TMP_PREFIX,
                               suffix='-' + os.path.basename(path))
  except OSError as e:
    raise storage_error(path, e) from e
  try:
    try:
      os.fchmod(fd, _MODE)
      _write_bytes(fd, data, path)
      os.fsync(fd)
    finally:
      os.close(fd)
    os.replace(tmp, path)
  except OSError as e:
    remove_quietly(tmp)
    raise storage_error(path, e) from e
  except BaseException:
    remove_quietly(tmp)
    raise
  fsync_dir(directory)


def to_json(obj, allow_nan: bool = True) -> str:
  try:
    return json.dumps(obj, indent=1, allow_nan=allow_nan)
  except ValueError as e:       # NaN or infinity where JSON has none
    raise StorageError(f'refusing to write a value JSON cannot hold: {e}') from e


def atomic_write_json(path: str, obj, allow_nan: bool = True) -> None:
  atomic_write(path, to_json(obj, allow_nan))


def append_line(path: str, text: str) -> None:
  """Appends one line (a record) to `path`; on failure the file keeps its old end."""
  data = (text.rstrip('\n') + '\n').encode('utf-8')
  try:
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, _MODE)
  except OSError as e:
    raise storage_error(path, e) from e
  try:
    size = os.fstat(fd).st_size
    # A torn last line (a process killed mid-write) stays a line of its own,
    # which readers skip, instead of swallowing this record.
    if size and os.pread(fd, 1, size - 1) != b'\n':
      data = b'\n' + data
    try:
      _write_bytes(fd, data, path)
    except OSError as e:
      with contextlib.suppress(OSError):
        os.ftruncate(fd, size)
      raise storage_error(path, e) from e
  except OSError as e:
    raise storage_error(path, e) from e
  finally:
    os.close(fd)


def read_jsonl(path: str) -> tuple[list[dict], list[str]]:
  """(records, problems) of a JSON-lines file: lines that are not a JSON object
  (a torn last line, a foreign line) are left out and described in `problems`."""
  with open(path, 'rb') as f:
    raw = f.read()
  records, problems = [], []
  lines = raw.split(b'\n')
  for k, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      rec = json.loads(line.decode('utf-8'))
    except ValueError:
      rec = None
    if isinstance(rec, dict):
      records.append(rec)
    else:
      torn = k == len(lines) and not raw.endswith(b'\n')
      problems.append(f'line {k} ' + ('is torn (the write was cut off)' if torn
                                      else 'is not a JSON record'))
  return records, problems


def mkdtemp(directory: str) -> str:
  try:
    os.makedirs(directory, exist_ok=True)
    return tempfile.mkdtemp(dir=directory, prefix=TMP_PREFIX)
  except OSError as e:
    raise storage_error(directory, e) from e


def replace_dir(tmp: str, final: str) -> None:
  """Puts the complete directory `tmp` at `final` (see module doc)."""
  old = final + '.old'
  try:
    if os.path.exists(final):
      remove_quietly(old)
      os.replace(final, old)
      os.replace(tmp, final)
      remove_quietly(old)
    else:
      os.replace(tmp, final)
  except OSError as e:
    recover_dir(final)
    raise storage_error(final, e) from e
  fsync_dir(os.path.dirname(final) or '.')


def recover_dir(final: str) -> bool:
  """After a crash inside `replace_dir`: puts `final.old` back if `final` is
  missing, drops it otherwise. True if it put one back."""
  old = final + '.old'
  if not os.path.exists(old):
    return False
  if os.path.exists(final):
    remove_quietly(old)
    return False
  try:
    os.replace(old, final)
  except OSError:
    return False
  return True


def remove_stale_temporaries(directory: str) -> None:
  """Temporary files and directories a killed writer left in `directory` (only
  where no other process writes: a locked run directory)."""
  try:
    names = os.listdir(directory)
  except OSError:
    return
  for name in names:
    if name.startswith(TMP_PREFIX):
      remove_quietly(os.path.join(directory, name))


@contextlib.contextmanager
def locked(path: str):
  """An exclusive lock on `path` (created if needed) for the duration of the block:
  read-modify-write of a file several processes share (e.g. a sweep's sweep.json)."""
  import fcntl
  try:
    f = open(path, 'a')
  except OSError as e:
    raise storage_error(path, e, 'lock') from e
  try:
    fcntl.flock(f, fcntl.LOCK_EX)
    yield
  finally:
    f.close()
