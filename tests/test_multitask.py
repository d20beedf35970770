"""Multi-task training: one network (shared processor, encoders and decoders per
algorithm, named as dm-clrs's), algorithms interleaved one per step."""

import clrs
import jax
import numpy as np
import pytest
from clrs._src import baselines

from nar.config import ConfigError
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


def test_multi_task_checks_what_each_method_supports(monkeypatch):
  import augment
  from nar import methods
  from nar.config import ConfigError, TrainConfig
  from nar.methods import check_runnable
  check_runnable(TrainConfig(algorithm='bfs,dfs').validate())
  check_runnable(TrainConfig(algorithm='bfs,segments_intersect', method='hint_relic').validate())
  # One-step twins (the paper's, the default) and rollout twins alike.
  for twin in ('step', 'rollout'):
    check_runnable(TrainConfig(algorithm='bfs,dfs', method='hint_relic',
                               relic_twin=twin).validate())

  class SingleOnly(methods.Baseline):
    supports_multi_task = False
  monkeypatch.setattr(methods, '_resolve', lambda config: (SingleOnly, config))
  with pytest.raises(ConfigError, match='does not support multi-task'):
    check_runnable(TrainConfig(algorithm='bfs,dfs').validate())
  monkeypatch.undo()
  monkeypatch.setattr(augment, 'supported', lambda: ('insertion_sort',))
  with pytest.raises(ConfigError, match='applies to none of bfs, dfs'):
    check_runnable(TrainConfig(algorithm='bfs,dfs', method='hint_relic').validate())


def test_multi_task_hint_relic_regularises_the_algorithms_with_a_rule(tmp_path):
  """Hint-ReLIC in a multi-task run: the invariance loss for the algorithms with
  an augmentation rule, each with its own critics (left alone by the others'
  steps), the plain loss for the others."""
  import json
  from nar.hint_relic import HintReLIC
  from nar.methods import Baseline
  from nar.train import build_run_model, other_algorithms_modules, train
  from tests.test_train import tiny
  # insertion_sort second: its one-step twins run algorithm 1's step of the shared network.
  config = tiny(tmp_path / 'run', tmp_path / 'cache', algorithm='segments_intersect,insertion_sort',
                method='hint_relic', steps=2, eval_every=2, train_sizes=(5,),
                relic_critic_hidden=8, relic_pairs=1,
                # One evaluation shape per algorithm: compilation is most of the time.
                val_size=8, test_size=8, eval_batch_size=8)
  model = build_run_model(config)
  assert [type(t) for t in model.tasks] == [Baseline, HintReLIC]
  assert model.tasks[1].algorithm_index == 1 and config.relic_twin == 'step'
  results = train(config, progress=False)
  assert set(results['per_algorithm']) == {'insertion_sort', 'segments_intersect'}
  records = [json.loads(x) for x in open(tmp_path / 'run' / 'metrics.jsonl')]
  train_records = {r['algorithm']: r for r in records if r['kind'] == 'train'}
  assert train_records['insertion_sort']['relic_anchors'] > 0
  assert 'relic_contrast' not in train_records['segments_intersect']
  params = model.init_params(jax.random.PRNGKey(0))
  critics = {k for k in params if 'relic_critic' in k}
  assert critics and all(k.startswith('algo_1_relic_critic/') for k in critics)
  assert critics <= other_algorithms_modules(params, 0)      # frozen in segments_intersect's step


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


def test_update_leaves_other_algorithms_encoders_and_moments_alone():
  """dm-clrs's `filter_null_grads` semantics (its own function no longer runs on
  this JAX): a step of algorithm i moves neither the parameters nor the Adam
  moments of another algorithm's modules; Adam's step count is global."""
  import jax.numpy as jnp
  from nar.config import TrainConfig
  from nar.train import make_optimizer, make_update
  k = iter(jax.random.split(jax.random.PRNGKey(0), 8))
  proc, enc0, enc1 = ('net/mpnn_aggr_clrs_processor/linear',
                      'net/~_construct_encoders_decoders/algo_0_x_enc_linear',
                      'net/~_construct_encoders_decoders/algo_1_x_enc_linear')
  params = {m: {'w': jax.random.normal(next(k), (3, 3))} for m in (proc, enc0, enc1)}
  x = jax.random.normal(next(k), (2, 3))

  def loss_of(enc):
    def loss(p, rng, x):
      del rng
      return jnp.sum((jnp.tanh(x @ p[proc]['w']) @ p[enc]['w']) ** 2), {}
    return loss
  optimizer = make_optimizer(TrainConfig(learning_rate=0.1, grad_clip=1.0).validate())
  copy = lambda t: jax.tree_util.tree_map(jnp.copy, t)  # noqa: E731  (inputs are donated)
  steps = [make_update(loss_of(enc0), optimizer, algorithm_index=0),
           make_update(loss_of(enc1), optimizer, algorithm_index=1)]
  # A fresh state: algorithm 1's step is a plain step for its modules.
  p1, s1, *_ = steps[1](copy(params), optimizer.init(params), None, x)
  plain, _, *_ = make_update(loss_of(enc1), optimizer)(copy(params), optimizer.init(params),
                                                        None, x)
  for m in (proc, enc1):
    np.testing.assert_allclose(p1[m]['w'], plain[m]['w'], rtol=1e-6)
  np.testing.assert_array_equal(p1[enc0]['w'], params[enc0]['w'])
  # Then algorithm 0: algorithm 1's parameters and moments (non-zero now) stay put.
  p2, s2, *_ = steps[0](copy(p1), copy(s1), None, x)
  np.testing.assert_array_equal(p2[enc1]['w'], p1[enc1]['w'])
  adam1, adam2 = s1[-1][0], s2[-1][0]
  assert float(jnp.abs(adam1.mu[enc1]['w']).sum()) > 0
  np.testing.assert_array_equal(adam2.mu[enc1]['w'], adam1.mu[enc1]['w'])
  np.testing.assert_array_equal(adam2.nu[enc1]['w'], adam1.nu[enc1]['w'])
  assert not np.array_equal(p2[enc0]['w'], p1[enc0]['w'])
  assert not np.array_equal(p2[proc]['w'], p1[proc]['w'])
  assert (int(adam1.count), int(adam2.count)) == (1, 2)
  assert jax.tree_util.tree_structure(s2) == jax.tree_util.tree_structure(s1)


# ----------------------------------------------------------------------- training
def test_multi_task_run_results_and_exact_resume(tmp_path):
  import json
  import os
  from nar.train import train
  from tests.test_train import _final_params, tiny
  cache = tmp_path / 'cache'
  # One evaluation chunk of one shape per split: compilation is most of this test's time.
  kw = dict(algorithm='insertion_sort,bfs', steps=6, eval_every=3, train_sizes=(4,),
            val_size=8, eval_batch_size=8)
  full = train(tiny(tmp_path / 'full', cache, **kw), progress=False)
  assert full['algorithms'] == ['insertion_sort', 'bfs']
  per = full['per_algorithm']
  assert set(per) == {'insertion_sort', 'bfs'}
  # Selection on the sum of the per-algorithm validation scores.
  assert full['best_val']['score'] == pytest.approx(
      sum(p['best_val']['score'] for p in per.values()))
  assert full['test_score'] == pytest.approx(sum(p['test_score'] for p in per.values()) / 2)
  assert all(0 <= p['test']['score'] <= 1 for p in per.values())
  records = [json.loads(x) for x in open(tmp_path / 'full' / 'metrics.jsonl')]
  assert [r['algorithm'] for r in records if r['kind'] == 'train'] == ['insertion_sort', 'bfs'] * 3
  val = [r for r in records if r['kind'] == 'val']
  assert [r['step'] for r in val] == [3, 6]
  assert set(val[0]['per_algorithm']) == {'insertion_sort', 'bfs'}
  assert [r['algorithm'] for r in records if r['kind'] == 'test'] == ['insertion_sort', 'bfs']
  # `nar evaluate` runs the same test phase: at the run's own test size it gives
  # each algorithm's results.json score, and records them per algorithm.
  from nar.evaluations import read_evaluations
  from nar.train import evaluate_run_sizes
  size = full['test_size']
  again, = evaluate_run_sizes(str(tmp_path / 'full'), [size], progress=False,
                              num_samples=full['config']['test_samples'])
  assert {a: e['score'] for a, e in again['per_algorithm'].items()} == {
      a: p['test_score'] for a, p in per.items()}
  assert again['score'] == pytest.approx(full['test_score'])
  assert read_evaluations(str(tmp_path / 'full'))[size]['per_algorithm']['bfs']['score'] == (
      per['bfs']['test_score'])
  params = _final_params(tmp_path / 'full')
  # Exported with dm-clrs's names: algo_i_ is the i-th algorithm of the run.
  from nar.cli import main
  from nar.interop import load_dm_clrs_params
  assert main(['export', str(tmp_path / 'full'), str(tmp_path / 'dm.pkl')]) == 0
  exported = load_dm_clrs_params(str(tmp_path / 'dm.pkl'))
  assert any('algo_0_key_enc_linear' in k for k in exported)      # insertion_sort's
  assert any('algo_1_s_enc_linear' in k for k in exported)        # bfs's source node

  # Stopped at step 4 (resumes from the step-3 checkpoint, an odd step: bfs next).
  assert train(tiny(tmp_path / 'resumed', cache, **kw), progress=False,
               stop_after=4) == {'stopped_at': 4}
  resumed = train(tiny(tmp_path / 'resumed', cache, **kw), progress=False)
  a, b = params, _final_params(tmp_path / 'resumed')
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  assert resumed['per_algorithm'] == full['per_algorithm']
  assert resumed['best_val'] == full['best_val']
  val_b = [json.loads(x) for x in open(tmp_path / 'resumed' / 'metrics.jsonl')]
  assert val == [r for r in val_b if r['kind'] == 'val']
  assert os.path.isdir(tmp_path / 'resumed' / 'checkpoints' / 'best')


def test_report_shows_a_multi_task_run_per_algorithm(tmp_path):
  import json
  from experiments.report import report
  out = tmp_path / 'g'
  single = out / 'bfs' / 'baseline' / 'seed0'
  single.mkdir(parents=True)
  json.dump({'algorithm': 'bfs', 'method': 'baseline', 'seed': 0, 'test_score': 0.5,
             'best_val': {'score': 0.6, 'step': 3}}, open(single / 'results.json', 'w'))
  multi = out / 'multi' / 'seed0'
  multi.mkdir(parents=True)
  json.dump({'algorithm': 'bfs,dfs', 'method': 'baseline', 'seed': 0, 'test_score': 0.45,
             'test_size': 64, 'algorithms': ['bfs', 'dfs'], 'best_val': {'score': 1.3, 'step': 6},
             'per_algorithm': {
                 'bfs': {'best_val': {'score': 0.9, 'step': 6}, 'test_score': 0.7},
                 'dfs': {'best_val': {'score': 0.4, 'step': 6}, 'test_score': 0.2}}},
            open(multi / 'results.json', 'w'))
  (multi / 'metrics.jsonl').write_text(json.dumps(
      {'kind': 'val', 'step': 6, 'score': 1.3,
       'per_algorithm': {'bfs': {'score': 0.9}, 'dfs': {'score': 0.4}}}) + '\n')
  # A multi-task run's evaluation at another size: each algorithm's row reads its own score.
  (multi / 'evaluations.json').write_text(json.dumps({'128': {
      'score': 0.35, 'checkpoint_step': 6,
      'per_algorithm': {'bfs': {'score': 0.6}, 'dfs': {'score': 0.1}}}}))
  text = report(str(out), plots=True)
  head = next(line for line in text.splitlines() if line.startswith('| algorithm | baseline |'))
  assert 'baseline (multi-task)' in head
  bfs = next(line for line in text.splitlines() if line.startswith('| bfs |'))
  dfs = next(line for line in text.splitlines() if line.startswith('| dfs |'))
  assert '50.00 +- 0.00 (1)' in bfs and '70.00 +- 0.00 (1)' in bfs
  assert '+20.00' in bfs                       # paired with the single-task run by seed
  assert 'missing' in dfs and '20.00 +- 0.00 (1)' in dfs
  assert 'bfs,dfs' not in text
  val_bfs = [line for line in text.splitlines() if line.startswith('| bfs |')][1]
  assert '90.0' in val_bfs                     # the algorithm's own validation score
  sizes = text[text.index('against test size'):]
  assert '60.00' in sizes and '10.00' in sizes and '35.00' not in sizes


def test_cli_takes_algorithms_and_names_the_run_after_them(monkeypatch, capsys):
  from nar import cli
  seen = []
  monkeypatch.setattr(cli, '_train_and_print', lambda config, quiet: seen.append(config) or 0)
  assert cli.main(['train', '--algorithms', 'insertion_sort,bfs,dfs', '--seed', '1']) == 0
  assert seen[-1].algorithms == ('insertion_sort', 'bfs', 'dfs')
  assert seen[-1].out == 'runs/insertion_sort+bfs+dfs-baseline-s1'
  assert cli.main(['train', '-a', 'bfs']) == 0 and seen[-1].out == 'runs/bfs-baseline-s42'
  assert cli.main(['train', '-a', 'bfs,bfs']) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and 'lists bfs more than once' in err[0]


def test_sweep_entry_joined_with_plus_is_one_multi_task_run(tmp_path):
  import os
  from experiments import protocols
  from experiments import sweep as sw
  proto = protocols.Protocol('toy-multi', dict(hidden=8, steps=10, eval_every=5), seeds=1,
                             algorithm_overrides={'dfs': dict(steps=40, eval_every=20),
                                                  'bfs': dict(learning_rate=0.01)})
  # Each algorithm gets at least its single-task steps, and is validated as often.
  assert proto.settings('insertion_sort+dfs') == dict(hidden=8, steps=80, eval_every=40)
  with pytest.raises(ConfigError, match=r'sets learning_rate differently .*--set learning_rate'):
    proto.settings('bfs+dfs')
  cfg = sw.make_config('cpu', 'insertion_sort+bfs+dfs', 'baseline', 1, str(tmp_path), {})
  assert cfg.algorithms == ('insertion_sort', 'bfs', 'dfs')
  assert cfg.out == str(tmp_path / 'insertion_sort+bfs+dfs' / 'baseline' / 'seed1')
  assert (cfg.steps, cfg.eval_every, cfg.hidden) == (3 * 2000, 3 * 250, 32)   # dfs's, x 3
  with pytest.raises(ConfigError, match=r"unknown algorithm 'bsf'.*joins names with '\+'"):
    sw.sweep('cpu', ['bfs+bsf'], ['baseline'], 1, str(tmp_path / 'g'), progress=False)
  # Refused up front, before any run starts.
  with pytest.raises(ConfigError, match="unknown method 'nope'"):
    sw.sweep('cpu', ['bfs+dfs'], ['nope'], 1, str(tmp_path / 'g'), progress=False)
  assert not os.path.exists(tmp_path / 'g' / 'bfs+dfs')
