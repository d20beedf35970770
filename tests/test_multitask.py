"""Multi-task training: one network (shared processor, encoders and decoders per
algorithm, named as dm-clrs's), algorithms interleaved one per step."""

import clrs
import jax
import numpy as np
import pytest
from clrs._src import baselines

from nar.model import NetConfig, make_net, nb_dims_of
from nar.processors import ProcessorConfig
from tests.helpers import make_batch
from tests.test_model import _feedback

H = 8


def _shapes(params):
  return {m: {k: tuple(v.shape) for k, v in leaves.items()} for m, leaves in params.items()}


def test_same_tree_and_outputs_as_dm_clrs_multi_spec_model():
  algorithms = ('insertion_sort', 'bfs', 'lcs_length')
  batches = [make_batch(a, 5, 2, seed=k, time_bucketing=False) for k, a in enumerate(algorithms)]
  specs = [spec for _, spec in batches]
  fbs = [_feedback(b, spec) for b, spec in batches]
  ref = baselines.BaselineModel(
      specs, fbs, clrs.get_processor_factory('triplet_gmpnn', use_ln=True, nb_triplet_fts=8),
      hidden_dim=H, encode_hints=True, decode_hints=True, encoder_init='xavier_on_scalars')
  ref.init([fb.features for fb in fbs], 7)
  params = ref.params
  net = make_net(specs, [nb_dims_of(b.inputs, b.hints, b.outputs) for b, _ in batches],
                 NetConfig(ProcessorConfig(kind='triplet_gmpnn', hidden=H)))
  ours = net.init(jax.random.PRNGKey(0), *[[getattr(b, f) for b, _ in batches]
                                           for f in ('inputs', 'hints', 'lengths', 'node_mask')],
                  is_training=False, algorithm_index=-1)
  # Same parameter names and shapes: a dm-clrs multi-task checkpoint loads as is.
  assert _shapes(ours) == _shapes(params)
  assert any(k.endswith(f'algo_{len(algorithms) - 1}_pos_enc_linear') for k in ours)
  for i, (batch, spec) in enumerate(batches):
    out_ref, hints_ref = ref.net_fn.apply(params, jax.random.PRNGKey(0), [fbs[i].features], True,
                                          i, True, False)
    out = net.apply(params, None, batch.inputs, batch.hints, batch.lengths, batch.node_mask,
                    is_training=False, algorithm_index=i)
    assert set(out.outputs) == set(out_ref)
    for k, v in out_ref.items():
      np.testing.assert_allclose(out.outputs[k], v, atol=2e-5, rtol=1e-4, err_msg=k)
    for k in hints_ref[0]:
      np.testing.assert_allclose(out.hints[k], np.stack([h[k] for h in hints_ref]),
                                 atol=2e-5, rtol=1e-4, err_msg=k)


# ------------------------------------------------------------------ configuration
def test_algorithm_lists_are_validated():
  from nar.config import ConfigError, TrainConfig
  c = TrainConfig(algorithm='insertion_sort, bfs,dfs').validate()
  assert c.algorithm == 'insertion_sort,bfs,dfs' and c.algorithms == ('insertion_sort', 'bfs', 'dfs')
  assert c.multi_task and not TrainConfig(algorithm='bfs').validate().multi_task
  with pytest.raises(ConfigError, match=r"unknown algorithm 'bsf', 'nope'; choose from: .*bfs"):
    TrainConfig(algorithm='bsf,dfs,nope').validate()
  with pytest.raises(ConfigError, match='lists bfs more than once'):
    TrainConfig(algorithm='bfs,dfs,bfs').validate()
  with pytest.raises(ConfigError, match='names no algorithm'):
    TrainConfig(algorithm='').validate()
  with pytest.raises(ConfigError, match='empty name'):
    TrainConfig(algorithm='bfs,,dfs').validate()


def test_multi_task_refuses_methods_it_does_not_support_yet():
  from nar.config import ConfigError, TrainConfig
  from nar.methods import check_runnable
  with pytest.raises(ConfigError, match='supports the baseline method only'):
    check_runnable(TrainConfig(algorithm='bfs,dfs', method='hint_relic').validate())
  check_runnable(TrainConfig(algorithm='bfs,dfs').validate())


def test_streams_single_task_unchanged_multi_task_independent():
  from nar import data as data_lib
  from nar.config import TrainConfig
  from nar.methods import task_configs
  single = TrainConfig(algorithm='bfs', seed=5).validate()
  assert task_configs(single) == [single]
  multi = task_configs(TrainConfig(algorithm='bfs,dfs', seed=5).validate())
  assert [c.algorithm for c in multi] == ['bfs', 'dfs']
  assert len({c.seed for c in multi} | {5}) == 3
  assert data_lib.task_seed(5, 0, 1) == 5
