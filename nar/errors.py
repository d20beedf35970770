"""Errors a user can cause and the command line reports in one line (no traceback).

Plain classes with no imports, so that any layer can raise them and the command
line can catch them without importing what raises them. `ConfigError` (a bad
setting) lives in `nar.config`, `CheckpointError` in `nar.checkpoint`.
"""


class RunError(RuntimeError):
  """A run cannot start or continue (bad run directory, diverged loss...)."""
