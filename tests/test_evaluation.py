"""Our streamed, padding-aware metric equals clrs.evaluate on the same predictions."""

import clrs
import jax
import numpy as np
import pytest
from clrs._src import probing

from nar.batching import pad_samples, unpad_outputs
from nar.evaluation import ScoreAccumulator, hard_outputs
from nar.sample import processed_spec
from tests.helpers import make_samples


def _random_logits(batch, spec, rng):
  out = {}
  for name, x in batch.outputs.items():
    _, loc, typ = spec[name]
    n = batch.num_nodes
    if typ in ('pointer', 'permutation_pointer'):
      shape = x.shape + (n,) if typ == 'pointer' else x.shape
    else:
      shape = x.shape
    logits = rng.normal(size=shape).astype(np.float32)
    if typ == 'pointer' or typ == 'permutation_pointer' or typ == 'mask_one':
      # Bias towards the truth so scores are neither 0 nor 1.
      truth = x if typ != 'pointer' else np.eye(n)[x]
      logits = logits + 1.5 * truth
    elif typ == 'mask':
      logits = logits + 2.0 * (x - 0.5)
    out[name] = logits
  return out


@pytest.mark.parametrize('algorithm', ['insertion_sort', 'bfs', 'articulation_points',
                                       'mst_kruskal', 'floyd_warshall', 'naive_string_matcher',
                                       'lcs_length', 'find_maximum_subarray_kadane'])
def test_score_equals_clrs_evaluate(algorithm):
  rng = np.random.default_rng(0)
  spec = processed_spec(algorithm)
  n = 20 if algorithm == 'naive_string_matcher' else 6
  # Two batches, the second padded to more nodes than it has.
  batches = [pad_samples(make_samples(algorithm, n, 4, seed=s), spec, num_nodes=n + 3 * s)
             for s in (0, 1)]
  acc = ScoreAccumulator(spec)
  truths, preds = [], []
  for batch in batches:
    hard = jax.device_get(hard_outputs(spec, _random_logits(batch, spec, rng), batch.node_mask))
    acc.add(batch.outputs, hard, batch.node_mask)
    truths += unpad_outputs(batch.outputs, batch, spec)
    preds += unpad_outputs(hard, batch, spec)
  # clrs.evaluate on the concatenated, unpadded predictions (all samples have n nodes).
  def dps(items):
    return {k: probing.DataPoint(name=k, location=spec[k][1], type_=spec[k][2],
                                 data=np.stack([it[k] for it in items]))
            for k in items[0]}
  ref = clrs.evaluate(tuple(dps(truths).values()), dps(preds))
  ours = acc.result()
  assert set(ref) == set(ours)
  for k in ref:
    assert ours[k] == pytest.approx(float(ref[k]), abs=1e-6), k
  assert 0.0 < ours['score'] < 1.0


def test_a_split_is_evaluated_in_one_shape_with_the_predictions_of_tight_chunks():
  """`iterate_chunks` keeps the split's whole time axis in every chunk (one predict
  program per split); the predictions are those of each chunk padded only to its
  own longest trajectory, with and without length groups."""
  from nar import data as data_lib
  from nar.model import NetConfig, make_net, nb_dims_of
  from nar.processors import ProcessorConfig
  from nar.train import evaluation_shapes, make_predict
  spec = processed_spec('bfs')
  samples = make_samples('bfs', 7, 10, seed=2)
  split = pad_samples(samples, spec, time_bucketing=False)
  chunks = list(data_lib.iterate_chunks(split, 4))
  assert [real for _, real in chunks] == [4, 4, 2]
  assert {c.num_steps for c, _ in chunks} == {split.num_steps}
  assert len(evaluation_shapes(split, 4)) == 1
  for groups in (1, 2):
    net = make_net(spec, nb_dims_of(split.inputs, split.hints, split.outputs),
                   NetConfig(ProcessorConfig(hidden=8), length_groups=groups))
    params = net.init(jax.random.PRNGKey(0), split.inputs, split.hints, split.lengths,
                      split.node_mask, is_training=False)
    predict = make_predict(net, spec)
    for k, (chunk, real) in enumerate(chunks):
      own = pad_samples(samples[4 * k:4 * k + real], spec, time_bucketing=False)  # its longest
      assert own.num_steps <= chunk.num_steps
      got = jax.device_get(predict(params, chunk))
      want = jax.device_get(predict(params, own))
      for name in want:
        np.testing.assert_array_equal(np.asarray(got[name])[:real], want[name], err_msg=name)
