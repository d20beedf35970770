"""The step profiler reads back its own trace (its timings are never asserted)."""

import jax
import pytest

from experiments import profile_step


@pytest.mark.skipif(not hasattr(jax.profiler, 'ProfileData'),
                    reason='this JAX cannot read a trace back (jax.profiler.ProfileData)')
def test_profile_lists_the_steps_ops_with_their_phase_and_kind(tmp_path):
  r = profile_step.profile('bfs', hidden=8, batch_size=4, size=5, steps=1,
                           trace_dir=str(tmp_path))
  assert r['ops'] and r['total_s'] > 0 and r['step_s'] > 0
  phases = {op[3] for op in r['ops']}
  kinds = {op[4] for op in r['ops']}
  assert {'fwd', 'bwd'} <= phases, phases
  assert 'matmul' in kinds, kinds
  assert all(op[1] >= 0 and op[2] > 0 for op in r['ops'])
