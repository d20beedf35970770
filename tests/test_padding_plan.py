"""Training batches of one size share one padded shape (few compilations), and a
batch larger than the plan still gets a shape that fits it."""

import numpy as np

from nar import data as data_lib
from nar.batching import pad_samples
from nar.sample import processed_spec


def test_one_shape_per_training_size():
  stream = data_lib.TrainStream('bfs', seed=0, batch_size=8, sizes=(4, 7))
  shapes = {}
  for step in range(12):
    b = stream.batch(step)
    shapes.setdefault(data_lib.size_of_step('bfs', step, (4, 7)), set()).add(
        (b.num_nodes, b.num_steps))
  assert set(shapes) == {4, 7}
  assert all(len(v) <= 2 for v in shapes.values())   # the plan, and rarely a fallback
  assert sum(len(v) for v in shapes.values()) < 12


def test_plan_pads_without_changing_the_data_and_falls_back_when_too_small():
  spec = processed_spec('bfs')
  samples = data_lib.make_train_samples('bfs', 1, 0, 4, (5,))
  longest = max(s.length for s in samples)
  plan = data_lib.PaddingPlan({5: (7, longest + 3)})
  b = plan.pad(samples, spec, 5)
  assert (b.num_nodes, b.num_steps) == (7, longest + 3)
  exact = pad_samples(samples, spec, num_nodes=7, num_steps=longest + 3)
  for k in b.hints:
    np.testing.assert_array_equal(b.hints[k], exact.hints[k])
  tight = data_lib.PaddingPlan({5: (4, 1)}).pad(samples, spec, 5)   # too small: own shape
  assert tight.num_nodes == 5 and tight.num_steps >= longest
  assert data_lib.PaddingPlan({}).pad(samples, spec, None).num_nodes == 5


def test_twins_get_their_own_plan_built_only_when_twins_are_made():
  from nar.config import TrainConfig
  from nar.hint_relic import HintReLIC
  config = TrainConfig(algorithm='bfs', method='hint_relic', batch_size=8, train_sizes=(4, 7),
                       relic_twin='rollout', relic_beta=1.0)   # the twin batch itself
  method = HintReLIC(config, processed_spec('bfs'))
  method.example_batch()
  assert 'twin_plan' not in vars(method)        # evaluation needs no twins: nothing probed
  shapes = {}
  for step in range(10):
    batch_x, batch_y, _ = method.batch(step)
    size = data_lib.size_of_step('bfs', step, (4, 7))
    shapes.setdefault(size, set()).add((batch_y.num_nodes, batch_y.num_steps))
    assert batch_y.num_nodes >= batch_x.num_nodes
  assert 'twin_plan' in vars(method)
  assert sum(len(v) for v in shapes.values()) < 10


class _S:
  """A stand-in sample: what a plan reads of one."""
  def __init__(self, num_nodes, length):
    self.num_nodes, self.length = num_nodes, length


def test_planned_steps_never_shrink_with_size_and_a_longer_batch_takes_a_planned_shape():
  probe = {4: [_S(4, 3), _S(4, 4)], 7: [_S(7, 2), _S(7, 5)], 11: [_S(11, 3), _S(11, 4)]}
  plan = data_lib.PaddingPlan.probe(probe)
  # 11's probe needs 4 steps, but a batch of size 11 as long as size 7's gets 6.
  assert plan.shapes == {4: (4, 4), 7: (7, 6), 11: (11, 6)}
  assert plan.shape_for(7, 6, 7) == (7, 6)
  assert plan.shape_for(4, 5, 4) == (7, 6)     # too long for size 4: size 7's shape
  assert plan.shape_for(7, 7, 7) == (None, None)   # no planned shape holds it: its own
  assert plan.shape_for(5, 2, None) == (7, 6)  # a size without a plan


def test_headroom_adds_a_rung_on_the_largest_size_only_where_its_longest_fills_its_rung():
  full = {4: [_S(4, 2), _S(4, 4)], 16: [_S(16, 3), _S(16, 8)]}
  assert data_lib.PaddingPlan.probe(full, headroom=True).shapes == {4: (4, 4), 16: (16, 12)}
  assert data_lib.PaddingPlan.probe(full).shapes == {4: (4, 4), 16: (16, 8)}
  slack = {4: [_S(4, 2), _S(4, 4)], 16: [_S(16, 3), _S(16, 7)]}       # 7 of the rung 8
  assert data_lib.PaddingPlan.probe(slack, headroom=True).shapes[16] == (16, 8)
  same = {4: [_S(4, 4)], 16: [_S(16, 16), _S(16, 16)]}                # lengths never vary
  assert data_lib.PaddingPlan.probe(same, headroom=True).shapes[16] == (16, 16)


def test_a_run_of_bfs_compiles_one_program_per_training_size():
  """bfs's trajectories at n = 13 and 16 run past the probe's longest in one batch
  of six (README's run); with the plan they all fit the five planned shapes."""
  stream = data_lib.TrainStream('bfs', seed=42, batch_size=32)
  shapes = {(b.num_nodes, b.num_steps) for b in (stream.batch(k) for k in range(150))}
  assert shapes == set(stream.plan.shapes.values()) and len(shapes) == 5


def test_a_batch_in_a_larger_planned_shape_holds_the_same_data():
  spec = processed_spec('bfs')
  samples = data_lib.make_train_samples('bfs', 1, 0, 4, (5,))
  longest = max(s.length for s in samples)
  plan = data_lib.PaddingPlan({5: (5, 2), 8: (8, longest + 4)})
  b = plan.pad(samples, spec, 5)
  assert (b.num_nodes, b.num_steps) == (8, longest + 4)
  tight = pad_samples(samples, spec, time_bucketing=False)
  for k, v in tight.hints.items():
    cut = b.hints[k][:tight.num_steps]
    cut = cut[:, :, :5, :5] if cut.ndim == 4 else cut[:, :, :5]
    np.testing.assert_array_equal(cut, v)
  np.testing.assert_array_equal(b.lengths, tight.lengths)
  assert b.node_mask[:, 5:].sum() == 0
