"""The README's "Extending" recipes, each followed once: a training method, a
processor and an augmentation rule registered through their extension points
and used by a (tiny) run. The protocol recipe: tests/test_sweep.py."""

import json

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nar import registry
from nar.config import ConfigError, TrainConfig
from nar.methods import Baseline
from nar.train import train
from tests.test_train import tiny


@pytest.fixture
def clean_registry():
  methods, processors = dict(registry._METHODS), dict(registry._PROCESSORS)
  yield
  registry._METHODS.clear()
  registry._METHODS.update(methods)
  registry._PROCESSORS.clear()
  registry._PROCESSORS.update(processors)


class HalfHintLoss(Baseline):
  """A toy method: the baseline with hint losses at half weight."""

  def loss_fn(self, net):
    from nar.losses import supervised_loss
    spec = self.spec

    def loss(params, rng, batch):
      out = net.apply(params, rng, batch.inputs, batch.hints, batch.lengths, batch.node_mask,
                      is_training=True)
      total, terms = supervised_loss(spec, out, batch, hint_loss_weight=0.5)
      return total, {**terms, 'toy_marker': jnp.float32(1.0)}
    return loss


def test_a_registered_method_trains(tmp_path, clean_registry):
  with pytest.raises(ConfigError, match='unknown method'):
    TrainConfig(method='half_hint_loss').validate()
  registry.register_method('half_hint_loss', HalfHintLoss, description='toy')
  with pytest.raises(ValueError, match='registered already'):
    registry.register_method('half_hint_loss', HalfHintLoss)
  result = train(tiny(tmp_path / 'run', tmp_path / 'cache', method='half_hint_loss', steps=2,
                      eval_every=2), progress=False)
  assert result['method'] == 'half_hint_loss' and 0 <= result['test_score'] <= 1
  records = [json.loads(x) for x in open(tmp_path / 'run' / 'metrics.jsonl')]
  assert all(r['toy_marker'] == 1.0 for r in records if r['kind'] == 'train')


def test_a_registered_processor_trains(tmp_path, clean_registry):
  from clrs._src import processors as clrs_processors

  class SumOfNeighbours(clrs_processors.Processor):
    """A toy processor: h' = relu(W [z, sum_j adj_ij z_j]), no edge messages."""

    def __init__(self, out_size, name='toy_sum_processor'):
      super().__init__(name=name)
      self.out_size = out_size

    def __call__(self, node_fts, edge_fts, graph_fts, adj_mat, hidden, **kwargs):
      z = jnp.concatenate([node_fts, hidden], axis=-1)
      agg = jnp.einsum('bij,bjh->bih', adj_mat, z)
      return jax.nn.relu(hk.Linear(self.out_size)(jnp.concatenate([z, agg], -1))), None

  registry.register_processor('toy_sum', lambda out_size: SumOfNeighbours(out_size))
  with pytest.raises(ValueError, match='exists already'):
    registry.register_processor('triplet_gmpnn', lambda out_size: None)
  config = tiny(tmp_path / 'run', tmp_path / 'cache', processor='toy_sum', steps=2,
                eval_every=2)
  result = train(config, progress=False)
  assert 0 <= result['test_score'] <= 1
  from nar import methods
  from nar.sample import processed_spec
  from nar.train import build_network
  method = methods.get(config, processed_spec('bfs'))
  example = method.example_batch()
  params = method.init(build_network(config, method.spec, example), jax.random.PRNGKey(0),
                       example)
  assert any('toy_sum_processor' in k for k in params)
  assert not any('mpnn' in k for k in params)


def test_a_registered_rule_augments(monkeypatch):
  """A rule for insertion_sort (append one element larger than every key),
  registered in place of the shipped one: the core re-executes dm-clrs on it
  and keeps only valid pairs."""
  import augment
  from augment import core, rule
  from augment.sorting import key_args_from_inputs
  from tests.helpers import make_samples

  monkeypatch.setattr(rule, '_REGISTRY', {k: v for k, v in rule.registry().items()
                                          if k != 'insertion_sort'})
  monkeypatch.setattr(core, '_AUGMENTERS', {})

  def append_one_larger(sample, rng):
    key = np.array(sample.inputs['key'], dtype=np.float64)
    return augment.TwinArgs(args=(np.append(key, key.max() + 1.0),),
                            node_map=np.arange(key.shape[0]))
  augment.register(augment.RuleEntry('insertion_sort', append_one_larger, key_args_from_inputs,
                                     'append one element larger than every key'))
  aug = augment.get('insertion_sort')(make_samples('insertion_sort', 6, 1, seed=2)[0],
                                      np.random.default_rng(0))
  assert aug.num_added == 1 and aug.fully_valid.all() and len(aug.pairs) == aug.num_transitions
