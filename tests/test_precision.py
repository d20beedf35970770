"""Mixed precision: bfloat16 compute, float32 parameters, gradients and losses."""

from collections import Counter

import jax
import numpy as np
import pytest

from nar import methods
from nar import train as T
from nar.config import ConfigError, TrainConfig
from nar.sample import processed_spec


def _dot_operand_dtypes(jaxpr) -> Counter:
  found = Counter()

  def walk(j):
    for e in j.eqns:
      if e.primitive.name == 'dot_general':
        found[tuple(str(v.aval.dtype) for v in e.invars)] += 1
      for p in e.params.values():
        inner = getattr(p, 'jaxpr', None)
        if inner is not None:
          walk(getattr(inner, 'jaxpr', inner))
  walk(jaxpr.jaxpr)
  return found


def _setup(algorithm, precision):
  cfg = TrainConfig(algorithm=algorithm, hidden=16, batch_size=4, train_sizes=(8,),
                    precision=precision).validate()
  spec = processed_spec(algorithm)
  m = methods.get(cfg, spec)
  batch = m.batch(0)
  net = T.build_network(cfg, spec, batch)
  params = m.init(net, jax.random.PRNGKey(0), batch)
  return m, net, batch, params


@pytest.mark.parametrize('algorithm', ['bfs', 'insertion_sort'])
def test_bfloat16_computes_in_bfloat16_with_float32_parameters_and_loss(algorithm):
  losses = {}
  for precision, dtype in (('float32', 'float32'), ('bfloat16', 'bfloat16')):
    m, net, batch, params = _setup(algorithm, precision)
    forward = jax.make_jaxpr(lambda p: net.apply(  # noqa: B023
        p, None, batch.inputs, batch.hints, batch.lengths, batch.node_mask,  # noqa: B023
        is_training=True))(params)
    dots = _dot_operand_dtypes(forward)
    assert dots and set(dots) == {(dtype, dtype)}, dots
    (loss, _), grads = jax.value_and_grad(m.loss_fn(net), has_aux=True)(params, None, batch)
    assert loss.dtype == np.float32
    assert all(x.dtype == np.float32 for x in jax.tree_util.tree_leaves(params))
    assert all(x.dtype == np.float32 for x in jax.tree_util.tree_leaves(grads))
    losses[precision] = float(loss)
  assert losses['bfloat16'] == pytest.approx(losses['float32'], rel=2e-2)


def test_bfloat16_run_end_to_end(tmp_path):
  res = T.train(TrainConfig(algorithm='bfs', hidden=8, batch_size=4, steps=2, eval_every=1,
                            train_sizes=(4,), val_samples=4, test_samples=4, test_size=6,
                            eval_batch_size=4, precision='bfloat16', out=str(tmp_path / 'run'),
                            cache_dir=str(tmp_path / 'c')).validate(), progress=False)
  assert res['config']['precision'] == 'bfloat16' and 0.0 <= res['test_score'] <= 1.0


def test_unknown_precision_is_a_clear_error():
  with pytest.raises(ConfigError, match='precision'):
    TrainConfig(precision='float16').validate()
