"""Imported before dm-clrs: keeps TensorFlow (which dm-clrs imports) quiet and off
the accelerators, so that JAX alone owns them.

TensorFlow's C++ start-up lines ("All log messages before absl::InitializeLog()
...", "Could not find cuda drivers on your machine", "failed call to cuInit" on a
machine without a GPU) are written before TF_CPP_MIN_LOG_LEVEL takes effect, so
the import runs with the process's stderr captured; afterwards every captured
line is written back except those start-up lines (NOISE). A failing import shows
all of it. TF_CPP_MIN_LOG_LEVEL=0 in the environment turns the filter off.
"""

import contextlib
import os
import re
import sys
import tempfile

_USER_WANTS_TF_LOGS = os.environ.get('TF_CPP_MIN_LOG_LEVEL') == '0'
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('CUDA_VISIBLE_DEVICES_FOR_TF', '')

# Start-up lines of TensorFlow/XLA with nothing for the user to do: the notice
# absl prints before its logging is set up, INFO lines (I0000 ... file.cc:N] ...),
# and the CUDA probing of a machine without a GPU (TensorFlow is kept off the
# GPUs anyway, below).
NOISE = (
    re.compile(r'^WARNING: All log messages before absl::InitializeLog\(\) is called '
               r'are written to STDERR$'),
    re.compile(r'^I\d{4} [\d:.]+\s+\d+ \S+:\d+\] '),
    re.compile(r'^[WE]\d{4} [\d:.]+\s+\d+ \S*cuda\w*\.cc:\d+\] (failed call to cuInit|'
               r'Unable to register cu(DNN|FFT|BLAS) factory)'),
    re.compile(r'^[WE]\d{4} [\d:.]+\s+\d+ \S*computation_placer\.cc:\d+\] '
               r'computation placer already registered'),
)


def is_noise(line: str) -> bool:
  return any(p.search(line.rstrip('\n')) for p in NOISE)


@contextlib.contextmanager
def filtered_stderr(enabled: bool = True):
  """Runs the block with file descriptor 2 (where the C++ libraries write)
  captured; then writes back the lines that are not NOISE (all of them if the
  block raises)."""
  if not enabled:
    yield
    return
  try:
    sys.stderr.flush()
    saved = os.dup(2)
  except (AttributeError, ValueError, OSError):   # no stderr to capture
    yield
    return
  failed = False
  with tempfile.TemporaryFile() as tmp:
    os.dup2(tmp.fileno(), 2)
    try:
      yield
    except BaseException:
      failed = True
      raise
    finally:
      with contextlib.suppress(AttributeError, ValueError, OSError):
        sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      tmp.seek(0)
      lines = tmp.read().splitlines(keepends=True)
      kept = b''.join(x for x in lines
                      if failed or not is_noise(x.decode(errors='replace')))
      view = memoryview(kept)
      while view:
        view = view[os.write(2, view):]


with filtered_stderr(enabled=not _USER_WANTS_TF_LOGS):
  try:  # TensorFlow must not grab GPU memory that JAX needs.
    import tensorflow as _tf  # noqa: F401
    _tf.config.set_visible_devices([], 'GPU')
  except Exception:  # pylint: disable=broad-except
    pass

import absl.logging as _absl_logging  # noqa: E402

_absl_logging.set_verbosity(_absl_logging.ERROR)
