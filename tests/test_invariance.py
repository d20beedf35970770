"""The invariance metrics (`nar.invariance`): hand-built cases whose answer is
known, and the measurement of a run (`nar evaluate RUN --invariance`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from augment.core import AugmentedSample
from nar import invariance
from nar.config import TrainConfig
from nar.hint_relic import regularised_hints
from nar.model import make_step_net, nb_dims_of, net_config_of
from nar.sample import processed_spec
from nar.train import build_network
from tests.helpers import make_samples


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_identical_representations_retrieve_every_partner():
  rng = np.random.default_rng(0)
  z = jnp.asarray(_unit(rng.normal(size=(3, 5, 4))))      # 3 anchors' candidate sets of 5
  target = jnp.asarray([0, 3, 4])
  valid = jnp.ones((3, 5), bool)
  sums = invariance._retrieval(z, z, target, target, valid, valid, jnp.ones(3))
  assert float(sums['retrieved']) == float(sums['anchors']) == 3
  assert float(sums['partner_sim']) == pytest.approx(3.0, rel=1e-6)
  # Candidates shuffled on one side: partners are found nowhere near every time.
  shuffled = z[:, ::-1]
  miss = invariance._retrieval(z, shuffled, target, target, valid, valid, jnp.ones(3))
  assert float(miss['retrieved']) < 3
  # Padding candidates are never retrieved, and weight-0 anchors count nothing.
  masked = valid.at[:, 1].set(False)
  half = invariance._retrieval(z, z, target, target, masked, masked, jnp.asarray([1., 0., 1.]))
  assert float(half['anchors']) == 2 and float(half['retrieved']) == 2
  assert float(half['others']) == 2 * 3                    # 5 - partner - padded


def _identity_twin(sample, rng):
  """A twin equal to its original: every step pairs with itself, valid for every hint."""
  t = np.arange(sample.length - 1)
  hints = [k for k, v in processed_spec('insertion_sort').items() if v[0] == 'hint']
  return AugmentedSample(sample, sample, np.arange(sample.num_nodes), np.stack([t, t], 1),
                         {h: np.ones(len(t), bool) for h in hints})


def test_a_twin_equal_to_its_original_is_perfectly_invariant():
  spec = processed_spec('insertion_sort')
  samples = make_samples('insertion_sort', 6, 3, seed=2)
  pointers, others = regularised_hints(spec, 'all')
  data = invariance.make_set(samples, spec, _identity_twin, pointers, others, 3, seed=0)
  cfg = TrainConfig(algorithm='insertion_sort', hidden=8).validate()
  net = build_network(cfg, spec, data.batch_x)
  bx = data.batch_x
  step_net = make_step_net(spec, nb_dims_of(bx.inputs, bx.hints, bx.outputs), net_config_of(cfg))
  params = net.init(jax.random.PRNGKey(3), bx.inputs, bx.hints, bx.lengths, bx.node_mask,
                    is_training=True)
  total = None
  for part in invariance.chunks(data, 2):                 # a last chunk filled with repeats
    total = invariance.add_sums(total, jax.jit(
        lambda p, d: invariance.invariance_sums(net, step_net, spec, p, None, d, pointers,
                                                others))(params, part))
  summary = invariance.summarise(total, with_critics=False)
  assert summary['anchors'] == 3 * 3 * 6 * 2               # 3 twins, 3 pairs, 6 nodes, 2 groups
  assert summary['retrieval'] == 1.0 and summary['agreement'] == 1.0
  assert summary['similarity_partner'] == pytest.approx(1.0, abs=1e-5)
  assert summary['similarity_other'] < summary['similarity_partner']
