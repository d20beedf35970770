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
