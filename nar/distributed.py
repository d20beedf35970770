"""Several hosts: start `jax.distributed` from the CLI or the cluster's environment.

Every process runs the same `nar train` command. Process 0 writes the run
directory (config, metrics, checkpoints, results); the others compute. On resume
process 0 reads the checkpoint and broadcasts it, so a run directory on a disk
that only process 0 sees is enough.

Where the addresses come from, first match wins:
  1. `--coordinator HOST:PORT --num-processes N --process-id I`;
  2. the variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID;
  3. `--distributed`: JAX's own cluster detection (SLURM, Open MPI, Kubernetes,
     Cloud TPU...), for launchers that set their own variables.
Without any of these, training is single-process (all local devices).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import jax

from nar.config import ConfigError
from nar.errors import RunError

ENV_VARIABLES = ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID')


def force_host_devices(env, count: int) -> None:
  """Makes the CPU backend of a JAX started with `env` (os.environ, or a
  subprocess's environment dict) show `count` devices: multi-device code tested
  on one CPU. Read when JAX starts its backends: set it before that."""
  flag = f'--xla_force_host_platform_device_count={count}'
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') + ' ' + flag).strip()


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
  coordinator: Optional[str] = None
  num_processes: Optional[int] = None
  process_id: Optional[int] = None
  auto: bool = False          # let JAX detect the cluster

  @property
  def is_distributed(self) -> bool:
    return self.auto or self.coordinator is not None


def _as_int(name: str, value) -> int:
  try:
    return int(value)
  except (TypeError, ValueError):
    raise ConfigError(f'{name} must be an integer, got {value!r}') from None


def resolve(coordinator: Optional[str] = None, num_processes=None, process_id=None,
            auto: bool = False, environ=None) -> ClusterSpec:
  """The cluster of this process from flags, else environment (see module doc)."""
  environ = os.environ if environ is None else environ
  given = [coordinator is not None, num_processes is not None, process_id is not None]
  source = 'flags --coordinator, --num-processes and --process-id'
  if not any(given):
    env = [environ.get(k) for k in ENV_VARIABLES]
    if any(v is not None for v in env):
      coordinator, num_processes, process_id = env
      given = [v is not None for v in env]
      source = 'variables ' + ', '.join(ENV_VARIABLES)
  if not any(given):
    return ClusterSpec(auto=auto)
  if not all(given):
    raise ConfigError(f'multi-host training needs all of the {source} (got only some)')
  n = _as_int('the number of processes', num_processes)
  i = _as_int('the process id', process_id)
  if n < 1:
    raise ConfigError(f'the number of processes must be >= 1, got {n}')
  if not 0 <= i < n:
    raise ConfigError(f'the process id must be in [0, {n - 1}], got {i}')
  host, sep, port = str(coordinator).rpartition(':')
  if not sep or not host or not port.isdigit():
    raise ConfigError(f"the coordinator address must look like HOST:PORT, got '{coordinator}'")
  return ClusterSpec(coordinator=str(coordinator), num_processes=n, process_id=i)


def initialize(spec: ClusterSpec, timeout_s: int = 300) -> None:
  """`jax.distributed.initialize` for `spec`; nothing for a single process."""
  if not spec.is_distributed:
    return
  kwargs = {}
  if spec.coordinator is not None:
    kwargs = dict(coordinator_address=spec.coordinator, num_processes=spec.num_processes,
                  process_id=spec.process_id)
  try:
    jax.distributed.initialize(initialization_timeout=timeout_s, **kwargs)
  except (RuntimeError, ValueError) as e:
    where = spec.coordinator or 'the address the cluster environment gives'
    raise RunError(f'could not join the distributed run at {where}: {e}'.splitlines()[0]) from e


def is_writer() -> bool:
  """Process 0 owns the run directory."""
  return jax.process_index() == 0


def broadcast_from_writer(tree):
  """Process 0's value of `tree` (NumPy leaves) on every process."""
  if jax.process_count() == 1:
    return tree
  from jax.experimental import multihost_utils
  return jax.device_get(multihost_utils.broadcast_one_to_all(tree))
