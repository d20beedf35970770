"""Errors a user can cause and the command line reports in one line (no traceback).

Plain classes with no imports, so that any layer can raise them and the command
line can catch them without importing what raises them. `ConfigError` (a bad
setting) lives in `nar.config`, `CheckpointError` in `nar.checkpoint`.
"""


class RunError(RuntimeError):
  """A run cannot start or continue (bad run directory, diverged loss...)."""


class RunInUseError(RunError):
  """Another process holds the run directory."""


class Stopped(KeyboardInterrupt):
  """A stop signal took effect (SIGINT: Ctrl-C, SIGTERM: a scheduler, `kill`).

  One rule whatever the moment (docs/troubleshooting.md): the command ends with
  exit code 128 + the signal's number (130, 143) and one line on stderr,
  `nar: stopped by SIGTERM; <saved>`, where `saved` says what was saved. A
  KeyboardInterrupt, so that no `except Exception` on the way swallows it.

  Attributes:
    signum: the signal's number; name: its name ('SIGINT').
    saved: what was saved and how to go on ('' until a layer that knows says it).
  """

  def __init__(self, signum: int, name: str, saved: str = ''):
    super().__init__(name)
    self.signum = signum
    self.name = name
    self.saved = saved
