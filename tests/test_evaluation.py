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
