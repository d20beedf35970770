"""The speed benchmark's defaults (its timings are never asserted: docs/speed.md)."""

from experiments.benchmark_speed import ONE_PER_FAMILY
from nar.catalogue import FAMILIES


def test_default_algorithms_are_one_of_each_clrs_family():
  family_of = {a: f for f, algorithms in FAMILIES.items() for a in algorithms}
  assert sorted(family_of[a] for a in ONE_PER_FAMILY) == sorted(FAMILIES)


def test_reference_runs_where_there_are_several_devices():
  """dm-clrs 2.0.3 cannot initialise with several local devices under this JAX
  (`jax.device_put_replicated` is gone); the benchmark shows it one device."""
  import os
  import subprocess
  import sys
  from pathlib import Path
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env.pop('XLA_FLAGS', None)
  root = Path(__file__).resolve().parents[1]
  out = subprocess.run(
      [sys.executable, '-m', 'experiments.benchmark_speed', '--algorithms', 'bfs',
       '--hidden', '8', '--batch-size', '4', '--size', '5', '--repeats', '1', '--devices', '2'],
      cwd=root, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  row = [line for line in out.stdout.splitlines() if line.startswith('| bfs |')]
  assert len(row) == 1
  cells = [c.strip() for c in row[0].strip('|').split('|')]
  assert cells[3] == '2'                       # devices
  assert float(cells[4]) > 0                   # dm-clrs samples/s was measured
