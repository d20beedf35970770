"""dm-clrs examples/run.py's settings (TrainConfig): each one, set away from its
default, gives the network dm-clrs's BaselineModel builds with the same setting
(same parameter tree, logits and loss), or is refused with one line."""

import dataclasses
import json

import clrs
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from clrs._src import baselines, probing

from nar.config import ConfigError, TrainConfig, config_conflicts
from nar.losses import supervised_loss
from nar.model import make_net, nb_dims_of, net_config_of
from tests.helpers import make_batch

H = 16

# run.py: hint_mode -> BaselineModel's (encode_hints, decode_hints).
HINT_MODES = {'encoded_decoded': (True, True), 'decoded_only': (False, True),
              'none': (False, False)}


def _feedback(batch, spec):
  def dp(name, x):
    _, loc, typ = spec[name]
    return probing.DataPoint(name=name, location=loc, type_=typ, data=np.asarray(x, np.float32))
  return clrs.Feedback(clrs.Features(tuple(dp(k, v) for k, v in batch.inputs.items()),
                                     tuple(dp(k, v) for k, v in batch.hints.items()),
                                     batch.lengths),
                       tuple(dp(k, v) for k, v in batch.outputs.items()))


def _pair(algorithm, **settings):
  """A small batch, dm-clrs's BaselineModel built as run.py builds it from
  `settings` (TrainConfig keys), initialised, and our network of the TrainConfig
  with those settings (`net_config_of`, the trainer's path)."""
  config = TrainConfig(algorithm=algorithm, hidden=H, length_groups=1, **settings).validate()
  batch, spec = make_batch(algorithm, 6, 3, seed=1, time_bucketing=False)
  fb = _feedback(batch, spec)
  encode, decode = HINT_MODES[config.hint_mode]
  factory = clrs.get_processor_factory(config.processor, use_ln=config.use_ln,
                                       nb_triplet_fts=config.nb_triplet_fts,
                                       nb_heads=config.nb_heads)
  ref = baselines.BaselineModel(
      spec, fb, factory, hidden_dim=H, encode_hints=encode, decode_hints=decode,
      encoder_init=config.encoder_init, use_lstm=config.use_lstm,
      dropout_prob=config.dropout_prob, hint_teacher_forcing=config.hint_teacher_forcing,
      hint_repred_mode=config.hint_repred_mode,
      nb_msg_passing_steps=config.nb_msg_passing_steps)
  ref.init(fb.features, 7)
  net = make_net(spec, nb_dims_of(batch.inputs, batch.hints, batch.outputs),
                 net_config_of(config))
  return batch, spec, fb, ref, net


def _check_equal(algorithm, check_loss=True, **settings):
  """Parameter tree, evaluation logits (outputs and hints) and training loss of
  ours equal dm-clrs's for the same parameters."""
  batch, spec, fb, ref, net = _pair(algorithm, **settings)
  params = ref.params
  ours_template = net.init(jax.random.PRNGKey(0), batch.inputs, batch.hints, batch.lengths,
                           batch.node_mask, is_training=True)
  assert (jax.tree_util.tree_structure(ours_template)
          == jax.tree_util.tree_structure(params)), sorted(set(ours_template) ^ set(params))
  assert jax.tree_util.tree_map(jnp.shape, ours_template) == jax.tree_util.tree_map(
      jnp.shape, params)
  out_ref, hints_ref = ref.net_fn.apply(params, jax.random.PRNGKey(0), [fb.features], True, 0,
                                        True, False)
  ours = net.apply(params, None, batch.inputs, batch.hints, batch.lengths, batch.node_mask,
                   is_training=False)
  for k, v in out_ref.items():
    np.testing.assert_allclose(ours.outputs[k], v, atol=2e-5, rtol=1e-4, err_msg=k)
  if hints_ref is None:            # hints not decoded
    assert ours.hints == {}
  else:
    assert set(ours.hints) == set(hints_ref[0])
    for k in hints_ref[0]:
      np.testing.assert_allclose(ours.hints[k], jnp.stack([h[k] for h in hints_ref]),
                                 atol=2e-5, rtol=1e-4, err_msg=k)
  if check_loss:
    key = jax.random.PRNGKey(5)
    ref_loss = ref._loss(params, key, fb, 0)
    out_train = net.apply(params, key, batch.inputs, batch.hints, batch.lengths,
                          batch.node_mask, is_training=True)
    ours_loss, terms = supervised_loss(spec, out_train, batch)
    np.testing.assert_allclose(ours_loss, ref_loss, rtol=1e-4)
    return params, terms
  return params, None


@pytest.mark.parametrize('hint_mode', ['decoded_only', 'none'])
@pytest.mark.parametrize('algorithm', ['dfs', 'floyd_warshall'])
def test_hint_modes_equal_baseline_model(hint_mode, algorithm):
  params, terms = _check_equal(algorithm, hint_mode=hint_mode)
  from nar.sample import processed_spec
  hints = [k for k, v in processed_spec(algorithm).items() if v[0] == 'hint']
  for name in hints:         # no hint encoder; hint decoders only when decoded
    assert not any(k.endswith(f'algo_0_{name}_enc_linear') for k in params)
    assert any(f'algo_0_{name}_dec_linear' in k for k in params) == (hint_mode == 'decoded_only')
  hint_terms = [k for k in terms if k.startswith('hint/')]
  assert bool(hint_terms) == (hint_mode == 'decoded_only')


@pytest.mark.parametrize('settings', [dict(use_ln=False), dict(nb_triplet_fts=3),
                                      dict(nb_msg_passing_steps=2), dict(use_lstm=True),
                                      dict(encoder_init='default')])
def test_model_settings_equal_baseline_model(settings):
  params, _ = _check_equal('dfs', **settings)
  if settings.get('use_lstm'):
    assert params['net/processor_lstm/linear']['w'].shape == (2 * H, 4 * H)


def test_other_processor_with_settings_equals_baseline_model():
  """dm-clrs's own processors (here gmpnn through our fast path and mpnn with two
  message-passing steps and no layer norm) take the same settings."""
  _check_equal('bfs', processor='gmpnn', use_ln=False, nb_msg_passing_steps=2)


@pytest.mark.parametrize('mode', ['hard', 'hard_on_eval'])
@pytest.mark.parametrize('algorithm', ['dfs', 'bfs'])
def test_hard_repred_modes_equal_baseline_model(mode, algorithm):
  """Hard re-prediction feeds argmax one-hots and thresholded masks back; dm-clrs's
  loss (training, where 'hard_on_eval' is soft) and predictions (evaluation) alike."""
  _check_equal(algorithm, hint_repred_mode=mode)


def test_hard_repred_stops_the_gradient_through_fed_back_hints():
  """'hard': the loss of step s reaches the parameters only through step s's own
  computation, not through the hints fed back from earlier steps."""
  batch, spec, _, ref, net = _pair('bfs', hint_repred_mode='hard')

  def grads(repred):
    _, _, _, ref_, net_ = _pair('bfs', hint_repred_mode=repred)
    def loss(p):
      out = net_.apply(p, None, batch.inputs, batch.hints, batch.lengths, batch.node_mask,
                       is_training=True)
      return supervised_loss(spec, out, batch)[0]
    return jax.grad(loss)(ref.params)
  hard, soft = grads('hard'), grads('soft')
  g_ref = jax.grad(lambda p: ref._loss(p, jax.random.PRNGKey(0), _feedback(batch, spec), 0))(
      ref.params)
  diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree_util.tree_leaves(hard),
                                                            jax.tree_util.tree_leaves(soft)))
  assert diff > 0
  for a, b in zip(jax.tree_util.tree_leaves(hard), jax.tree_util.tree_leaves(g_ref)):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=2e-3)


def test_full_teacher_forcing_equals_baseline_model():
  """hint_teacher_forcing=1: every training step reads the true hints."""
  _check_equal('dfs', hint_teacher_forcing=1.0)


def _alternate(key, p=0.5, shape=None, mode=None):
  """A Bernoulli draw replaced by a fixed pattern: samples 0, 2, 4... forced."""
  del key, p, mode
  mask = (jnp.arange(shape[0]) % 2 == 0).reshape((shape[0],) + (1,) * (len(shape) - 1))
  return jnp.broadcast_to(mask, shape)


def test_partial_teacher_forcing_mixes_truth_and_prediction_per_sample_as_dm_clrs(monkeypatch):
  """With the same samples forced (the draw replaced by a pattern in both),
  partial teacher forcing gives dm-clrs's loss: a forced sample reads the true
  hints of the step (pointers one-hot), the others their soft prediction."""
  monkeypatch.setattr(jax.random, 'bernoulli', _alternate)
  batch, spec, fb, ref, net = _pair('dfs', hint_teacher_forcing=0.5)
  key = jax.random.PRNGKey(3)
  ref_loss = ref._loss(ref.params, key, fb, 0)
  out = net.apply(ref.params, key, batch.inputs, batch.hints, batch.lengths, batch.node_mask,
                  is_training=True)
  np.testing.assert_allclose(supervised_loss(spec, out, batch)[0], ref_loss, rtol=1e-4)
  # Neither extreme: the pattern mixes them.
  for tf in (0.0, 1.0):
    _, _, _, _, other = _pair('dfs', hint_teacher_forcing=tf)
    o = other.apply(ref.params, key, batch.inputs, batch.hints, batch.lengths,
                    batch.node_mask, is_training=True)
    assert abs(float(supervised_loss(spec, o, batch)[0]) - float(ref_loss)) > 1e-4


def test_partial_teacher_forcing_draws_a_fraction_of_the_samples():
  """The real draw: over many keys, about `hint_teacher_forcing` of the samples
  read the truth at a step (seen through step 1's hint logits, which equal the
  forced run's where forced and the unforced run's elsewhere)."""
  batch, spec, _, ref, net = _pair('bfs', hint_teacher_forcing=0.3)
  nets = {tf: _pair('bfs', hint_teacher_forcing=tf)[4] for tf in (0.0, 1.0)}

  # Jitted: one compile a network. Run eagerly, every call compiled its scans
  # again, and a worker of the full suite died of a segfault inside XLA doing so
  # (three times, in CI and here; never alone).
  forwards = {}

  def step1(n, key):
    if id(n) not in forwards:
      forwards[id(n)] = jax.jit(lambda p, k, *xs: n.apply(p, k, *xs, is_training=True))
    out = forwards[id(n)](ref.params, key, batch.inputs, batch.hints, batch.lengths,
                          batch.node_mask)
    return np.asarray(out.hints['reach_h'][1])          # [B, N]: read step 1's input hints
  never = step1(nets[0.0], jax.random.PRNGKey(0))       # no draw at 0 or 1: the key is unused
  always = step1(nets[1.0], jax.random.PRNGKey(0))
  differ = np.any(np.abs(never - always) > 1e-5, axis=1)
  assert differ.all(), 'the check needs samples whose prediction differs from the truth'
  forced = []
  for k in range(40):
    got = step1(net, jax.random.PRNGKey(k))
    is_forced = np.all(np.abs(got - always) < 1e-5, axis=1)
    is_free = np.all(np.abs(got - never) < 1e-5, axis=1)
    assert np.all(is_forced ^ is_free)            # each sample is one or the other
    forced.extend(is_forced.tolist())
  assert 0.15 < np.mean(forced) < 0.45, np.mean(forced)


def _drop_pattern(rng, rate, x, broadcast_dims=()):
  """hk.dropout with a fixed mask (every third unit dropped), scaled as Haiku does."""
  del rng, broadcast_dims
  keep = (jnp.arange(x.size).reshape(x.shape) % 3) != 0
  return jnp.where(keep, x / (1.0 - rate), 0.0)


def test_dropout_equals_baseline_model_with_the_same_mask(monkeypatch):
  """Dropout on the processor output in training, after every message-passing step
  and before the LSTM, scaled by 1/(1-p); none in evaluation."""
  from haiku._src import basic
  monkeypatch.setattr(basic, 'dropout_impl', _drop_pattern)
  _check_equal('dfs', dropout_prob=0.3)
  _check_equal('dfs', dropout_prob=0.3, use_lstm=True, nb_msg_passing_steps=2)


def test_dropout_draws_differ_by_key_and_repeat_for_the_same_key():
  batch, spec, _, ref, net = _pair('bfs', dropout_prob=0.5)

  def loss(key):
    out = net.apply(ref.params, key, batch.inputs, batch.hints, batch.lengths, batch.node_mask,
                    is_training=True)
    return float(supervised_loss(spec, out, batch)[0])
  a, b = loss(jax.random.PRNGKey(1)), loss(jax.random.PRNGKey(2))
  assert a != b and loss(jax.random.PRNGKey(1)) == a
  with pytest.raises(ValueError):      # training with dropout needs a key
    loss(None)


def test_encoder_init_scales_the_scalar_hint_encoders_as_dm_clrs():
  """'xavier_on_scalars': scalar hint encoders start at std 1/sqrt(hidden);
  'default': Haiku's 1/sqrt(fan in) = 1 (fan in 1)."""
  stds = {}
  for init in ('default', 'xavier_on_scalars'):
    batch, _, _, _, net = _pair('dfs', encoder_init=init)
    ws = []
    for seed in range(20):
      p = net.init(jax.random.PRNGKey(seed), batch.inputs, batch.hints, batch.lengths,
                   batch.node_mask, is_training=True)
      ws.append(np.asarray(p['net/~_construct_encoders_decoders/algo_0_d_enc_linear']['w']))
    stds[init] = float(np.std(np.concatenate(ws)))
  # TruncatedNormal(stddev=s) has std 0.88 s.
  assert stds['default'] == pytest.approx(0.88, rel=0.15)
  assert stds['xavier_on_scalars'] == pytest.approx(0.88 / np.sqrt(H), rel=0.15)


# ------------------------------------------------------------- configuration
def test_defaults_are_run_py_defaults_and_old_configs_load_unchanged():
  """A config.json saved before these settings existed loads with run.py's
  defaults, which are what those runs computed, and resumes (no conflict)."""
  c = TrainConfig()
  assert (c.hint_mode, c.hint_teacher_forcing, c.hint_repred_mode, c.dropout_prob, c.use_lstm,
          c.nb_msg_passing_steps, c.use_ln, c.nb_triplet_fts, c.nb_heads, c.encoder_init,
          c.random_pos, c.enforce_permutations, c.enforce_pred_as_input, c.processor) == (
              'encoded_decoded', 0.0, 'soft', 0.0, False, 1, True, 8, 1, 'xavier_on_scalars',
              True, True, True, 'triplet_gmpnn')
  new = ('hint_mode', 'hint_teacher_forcing', 'hint_repred_mode', 'dropout_prob', 'use_lstm',
         'nb_msg_passing_steps', 'use_ln', 'nb_triplet_fts', 'nb_heads', 'encoder_init',
         'random_pos', 'enforce_permutations', 'enforce_pred_as_input', 'log')
  saved = {k: v for k, v in TrainConfig(algorithm='bfs', hidden=8).validate().to_json().items()
           if k not in new}
  loaded = TrainConfig.from_json(json.loads(json.dumps(saved)))
  assert loaded == TrainConfig(algorithm='bfs', hidden=8).validate()
  assert config_conflicts(saved, loaded) == []
  assert config_conflicts(saved, dataclasses.replace(loaded, hint_mode='none')) == [
      "hint_mode: saved 'encoded_decoded', now 'none'"]


def test_committed_results_configs_still_load():
  import glob
  import os
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  paths = glob.glob(os.path.join(root, 'results', '**', 'config.json'), recursive=True)
  assert paths
  for path in paths[:50]:
    config = TrainConfig.from_json(json.load(open(path)))
    assert config.hint_mode == 'encoded_decoded' and config.trackers == ()


@pytest.mark.parametrize('settings,why', [
    (dict(method='hint_relic', hint_mode='none'), 'needs hint_mode="encoded_decoded"'),
    (dict(method='twins_only', hint_mode='decoded_only'), 'needs hint_mode="encoded_decoded"'),
    (dict(method='hint_relic', use_lstm=True), 'needs use_lstm=false'),
    (dict(dropout_prob=1.0), 'dropout_prob must be < 1'),
    (dict(hint_teacher_forcing=1.5), 'hint_teacher_forcing must be <= 1'),
    (dict(hint_mode='hints'), 'unknown hint_mode'),
    (dict(nb_msg_passing_steps=0), 'nb_msg_passing_steps must be'),
    (dict(random_pos=False), 'random_pos=false is not applied here yet'),
    (dict(enforce_permutations=False), 'enforce_permutations=false is not applied'),
    (dict(enforce_pred_as_input=False), 'enforce_pred_as_input=false is not applied'),
])
def test_settings_that_cannot_apply_are_refused_in_one_line(settings, why):
  with pytest.raises(ConfigError, match=why) as e:
    TrainConfig(**settings).validate()
  assert len(str(e.value).splitlines()) == 1


def test_hint_relic_keeps_every_model_setting_it_can_run_with():
  TrainConfig(method='hint_relic', algorithm='insertion_sort', dropout_prob=0.1,
              hint_teacher_forcing=0.5, hint_repred_mode='hard', nb_msg_passing_steps=2,
              use_ln=False).validate()


# ---------------------------------------------------------- the no-hint baseline
def test_no_hint_baseline_trains_scores_and_is_a_report_column(tmp_path):
  """`--set hint_mode=none`: a run with no hint encoder, decoder or loss trains and
  is tested; a sweep's `--vary hint_mode=none` is its own column in the report,
  compared with the baseline."""
  from experiments import sweep as sw
  from experiments.report import report
  out = str(tmp_path / 'grid')
  tiny = dict(steps=2, hidden=8, batch_size=4, eval_every=1, train_sizes=[4], val_samples=4,
              test_samples=4, test_size=6, eval_batch_size=4, cache_dir=str(tmp_path / 'cache'))
  sw.sweep('cpu', ['bfs'], ['baseline'], 1, out, overrides=tiny, progress=False)
  done = dict(sw.sweep('cpu', ['bfs'], ['baseline'], 1, out, overrides=tiny, progress=False,
                       vary=sw.parse_vary(['hint_mode=none'])))
  run = sw.run_dir(out, 'bfs', 'baseline', 0, {'hint_mode': 'none'})
  assert done[run].startswith('done')
  results = json.load(open(f'{run}/results.json'))
  assert results['config']['hint_mode'] == 'none' and 0 <= results['test_score'] <= 1
  train_records = [json.loads(x) for x in open(f'{run}/metrics.jsonl')
                   if json.loads(x)['kind'] == 'train']
  assert train_records and all(not any(k.startswith('hint/') for k in r) for r in train_records)
  assert any(k.startswith('output/') for k in train_records[0])
  text = report(out, plots=False)
  header = next(line for line in text.splitlines() if line.startswith('| algorithm |'))
  assert '| baseline |' in header and 'baseline@hint_mode=none' in header


# ------------------------------------------------------------ the generalist
@pytest.mark.slow      # 8 min on 2 cores: 30 algorithms' programs to compile
def test_all_thirty_algorithms_train_together_at_tiny_settings(tmp_path, monkeypatch):
  """`nar train --algorithms all`: one network over the 30 CLRS algorithms (each
  its encoders and decoders, one processor) initialises, trains, validates and
  is tested on each."""
  from nar import data as data_lib
  from nar.catalogue import CLRS30_ALGORITHMS
  from nar.train import train
  # The padding plan's probe (128 samples a size, per algorithm) only sets shapes.
  monkeypatch.setattr(data_lib, 'PROBE_SAMPLES', 4)
  # Training at n = 14: the string matchers' size is then 17, the least their needles
  # of up to 8 characters fit in (run.py's length_needle -8).
  config = TrainConfig(algorithm='all', steps=2, hidden=8, batch_size=2, eval_every=2,
                       train_sizes=(14,), val_samples=2, test_samples=2, test_size=5,
                       length_groups=1,
                       eval_batch_size=2, out=str(tmp_path / 'run'),
                       cache_dir=str(tmp_path / 'cache')).validate()
  assert config.algorithms == tuple(CLRS30_ALGORITHMS)
  results = train(config, progress=False)
  assert list(results['per_algorithm']) == list(CLRS30_ALGORITHMS)
  assert all(0 <= r['test_score'] <= 1 for r in results['per_algorithm'].values())
  # Each was validated at the selected step (model selection on the sum of the 30).
  assert all(isinstance(r['best_val']['score'], float)
             for r in results['per_algorithm'].values())


def test_cli_all_names_the_run_directory_all(monkeypatch):
  from nar import cli
  seen = []
  monkeypatch.setattr(cli, '_train_and_print', lambda config, quiet: seen.append(config) or 0)
  assert cli.main(['train', '--algorithms', 'all', '--steps', '3']) == 0
  assert seen[0].out == 'runs/all-baseline-s42' and len(seen[0].algorithms) == 30


def test_generalist_cost_counts_a_training_step_of_each_algorithm():
  """experiments.generalist_cost: the FLOPs of a training step grow with the width
  (matmuls ~ hidden^2) and with the batch and trajectory length, and are mostly matmuls."""
  from experiments.generalist_cost import step_flops
  small = step_flops('bfs', 8, 2, 5)
  wide = step_flops('bfs', 16, 2, 5)
  large = step_flops('bfs', 8, 4, 5)
  assert small['T'] == wide['T'] and small['size'] == 5     # the same samples
  assert 2.5 < wide['matmul_flops'] / small['matmul_flops'] <= 4.0
  # Twice the samples (padded to their own longest trajectory): per sample and step, alike.
  per = lambda r, b: r['flops'] / (b * r['T'])       # noqa: E731
  assert per(large, 4) == pytest.approx(per(small, 2), rel=0.35)
  assert small['matmul_flops'] > 0.5 * small['flops']
  assert step_flops('naive_string_matcher', 8, 2, 16)['size'] == 20
