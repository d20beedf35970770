"""Configuration validation as a property: whatever JSON a setting is given, through
`nar train --set` or a file given to `nar run`, the outcome is a valid
configuration or one line and exit code 2, never a traceback (nothing trains)."""

import contextlib
import dataclasses
import glob
import io
import json
import math
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from nar import cli
from nar.config import INT_MAX, ConfigError, TrainConfig, settings_table

FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Edge values near every rule's bounds, weighted up so that each field meets them.
NON_FINITE = [float('nan'), float('inf'), -float('inf'), 10 ** 400]
EDGES = [None, True, False, 0, 1, -1, 2, 3, 4, 2 ** 31 - 1, 2 ** 31, 2 ** 32, -2 ** 63, 0.0, -0.0,
         1e-300, 0.5, 1e308, 4.0, '', 'x', 'bfs', 'all', 'float32', 'mpnn', 'hint_relic',
         'rollout', '\x00', [], [4], [3], [4.0], [True], [4, 2 ** 40], {}, 'NaN']
scalars = (st.none() | st.booleans() | st.integers() | st.integers(-2 ** 70, 2 ** 70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
json_values = st.one_of(
    st.sampled_from(NON_FINITE), st.sampled_from(EDGES), scalars,
    st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                 | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=5))
keys = st.one_of(*[st.sampled_from(FIELDS)] * 5, st.text(max_size=8))


@pytest.fixture(scope='module')
def trained():
  """`nar train`/`nar run` up to the start of training: the configuration they would train."""
  seen = []
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(cli, '_train_and_print', lambda config, quiet: seen.append(config) or 0)
    yield seen


def _main(argv):
  err = io.StringIO()
  with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
    try:
      code = cli.main(argv)
    except SystemExit as e:        # argparse's own errors
      code = e.code
  return code, err.getvalue()


def _check_outcome(code, err, seen):
  if code == 0:
    config = seen[-1]
    again = dataclasses.replace(config).validate()
    assert again == config
    text = json.dumps(config.to_json(), allow_nan=False)    # valid JSON: no NaN, no infinity
    assert TrainConfig.from_json(json.loads(text)) == config
    for name in ('learning_rate', 'grad_clip', 'relic_lambda', 'relic_alpha', 'relic_beta',
                 'relic_temperature'):
      assert isinstance(getattr(config, name), float) and math.isfinite(getattr(config, name))
  else:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('nar: error: ') and 'Traceback' not in err, err


@pytest.mark.parametrize('name', FIELDS)
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=json_values, as_json=st.booleans(),
       others=st.lists(st.tuples(keys, json_values, st.booleans()), max_size=2))
def test_any_set_value_is_a_valid_config_or_one_line(trained, name, value, as_json, others):
  argv = ['train', '-a', 'bfs']
  for key, v, j in [(name, value, as_json)] + others:
    text = json.dumps(v) if j or not isinstance(v, str) else v    # raw text or JSON
    argv.append(f'--set={key}={text}')
  seen_before = len(trained)
  code, err = _main(argv)
  assert (code == 0) == (len(trained) == seen_before + 1)
  _check_outcome(code, err, trained)


BASE = TrainConfig(algorithm='bfs', hidden=8).validate().to_json()


@pytest.mark.parametrize('name', FIELDS)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=json_values, changes=st.dictionaries(keys, json_values, max_size=2),
       dropped=st.lists(st.sampled_from(FIELDS), max_size=3),
       whole=st.none() | st.none() | st.none() | json_values | st.binary(max_size=20))
def test_any_config_file_is_a_valid_config_or_one_line(trained, tmp_path_factory, name, value,
                                                        changes, dropped, whole):
  path = tmp_path_factory.getbasetemp() / 'fuzzed-config.json'
  if whole is None:
    d = {k: v for k, v in BASE.items() if k not in dropped}
    d.update(changes)
    d[name] = value
    path.write_text(json.dumps(d))            # NaN and Infinity as Python's json writes them
  elif isinstance(whole, bytes):
    path.write_bytes(whole)
  else:
    path.write_text(json.dumps(whole))
  code, err = _main(['run', str(path)])
  _check_outcome(code, err, trained)
  if code == 2:
    assert str(path) in err           # the error names the file


@settings(max_examples=600, deadline=None)
@given(name=st.sampled_from(FIELDS), value=json_values)
def test_validation_of_any_value_is_a_config_or_a_config_error(name, value):
  try:
    config = TrainConfig(**{name: value}).validate()
  except ConfigError as e:
    assert len(str(e).splitlines()) == 1
    return
  json.dumps(config.to_json(), allow_nan=False)


def test_every_setting_declares_its_rule_and_help():
  for f in dataclasses.fields(TrainConfig):
    rule = f.metadata.get('rule')
    assert rule is not None and rule.help, f.name
    # The default itself is valid.
    rule.check(f.name, f.default)


@pytest.mark.parametrize('name, value, expected', [
    ('grad_clip', float('nan'), 'finite'),
    ('relic_lambda', float('nan'), 'finite'),
    ('relic_lambda', float('inf'), 'finite'),
    ('learning_rate', 0.0, '> 0'),
    ('seed', -1, '>= 0'),
    ('seed', INT_MAX + 1, '<= 2147483647'),
    ('seed', 1.5, 'integer'),
    ('seed', True, 'integer'),
    ('val_size', True, 'integer'),
    ('val_size', 3, '>= 4'),
    ('out', 5, 'text'),
    ('cache_dir', [], 'text'),
    ('relic_contrast', 'yes', 'true or false'),
    ('train_sizes', 7, 'list of integers'),
    ('train_sizes', [], 'list of integers'),
    ('relic_twin', None, "unknown relic_twin"),
])
def test_hostile_values_are_refused(name, value, expected):
  with pytest.raises(ConfigError, match=expected.replace('+', r'\+')):
    TrainConfig(**{name: value}).validate()


def test_ints_given_for_floats_are_floats():
  config = TrainConfig(relic_lambda=1, grad_clip=0).validate()
  assert config.relic_lambda == 1.0 and isinstance(config.relic_lambda, float)


def test_every_committed_config_loads():
  paths = glob.glob(os.path.join(ROOT, 'results', '**', 'config.json'), recursive=True)
  assert paths
  for path in paths:
    with open(path) as f:
      TrainConfig.from_json(json.load(f))


def test_old_config_without_relic_twin_reads_as_rollout():
  old = dict(BASE)
  del old['relic_twin'], old['schema']      # a version-1 file
  old['method'] = 'hint_relic'
  assert TrainConfig.from_json(old).relic_twin == 'rollout'


@pytest.mark.parametrize('missing', ['algorithm', 'method'])
def test_a_config_without_its_identity_is_refused(tmp_path, missing):
  d = dict(BASE)
  del d[missing]
  path = tmp_path / 'config.json'
  path.write_text(json.dumps(d))
  code, err = _main(['run', str(path)])
  assert code == 2 and missing in err and str(path) in err and len(err.splitlines()) == 1


def test_list_settings_names_every_key_with_type_and_default(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(['train', '--list-settings'])
  assert e.value.code == 0
  out = capsys.readouterr().out.splitlines()
  rows = {line.split()[0]: line for line in out[1:]}
  assert set(rows) == set(FIELDS)
  for key, type_name, default, description in settings_table():
    assert type_name in rows[key] and default in rows[key] and description in rows[key]


def test_training_flags_have_help_with_defaults(capsys):
  with pytest.raises(SystemExit):
    cli.main(['train', '--help'])
  text = ' '.join(capsys.readouterr().out.split())
  for flag, default in [('--steps', '10000'), ('--hidden', '128'), ('--batch-size', '32'),
                        ('--seed', '42'), ('--eval-every', '500'), ('--test-size', '64'),
                        ('--processor', 'triplet_gmpnn')]:
    assert flag in text and f'(default {default})' in text, flag


# ----------------------------------------------------- beyond any memory
# Widths, batches and sizes up to 2^31 - 1: what cannot fit in the (patched) free
# memory is refused by the memory plan in one line, exit 2, before anything is
# generated or built (nothing allocates, nothing is killed); what it lets through fits.
FREE = 8 * 2 ** 30
counts = st.one_of(st.integers(1, 64), st.integers(1, INT_MAX),
                   st.sampled_from([INT_MAX, 10 ** 6, 50_000, 4096, 512]))
sizes = st.one_of(st.integers(4, 64), st.integers(4, INT_MAX), st.sampled_from([100_000, 2048]))


_TRAIN_AND_PRINT = cli._train_and_print     # the real one (`trained` replaces it)


@pytest.fixture
def planned(monkeypatch):
  from nar import data as data_lib
  from nar import train as train_lib
  seen = []
  monkeypatch.setattr(cli, '_train_and_print', _TRAIN_AND_PRINT)
  monkeypatch.setattr(train_lib, 'free_memory_bytes', lambda device=None: FREE)
  monkeypatch.setattr(data_lib, 'probe_samples', lambda *a: pytest.fail('data generated'))
  monkeypatch.setattr(data_lib, 'load_split', lambda *a, **k: pytest.fail('data generated'))
  monkeypatch.setattr(train_lib, '_train', lambda run, config, *a: seen.append(config) or {
      'test_size': config.test_size, 'test_score': 0.0})
  return seen


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(algorithm=st.sampled_from(['bfs', 'insertion_sort', 'floyd_warshall', 'kmp_matcher']),
       method=st.sampled_from(['baseline', 'hint_relic']), hidden=counts, batch=counts,
       train_sizes=st.lists(sizes, min_size=1, max_size=3),
       others=st.dictionaries(st.sampled_from(['relic_critic_hidden', 'augmentations',
                                               'relic_pairs', 'eval_batch_size', 'prefetch']),
                              counts, max_size=2),
       evaluation=st.dictionaries(st.sampled_from(['test_size', 'val_size']), sizes, max_size=1),
       remat=st.sampled_from(['full', 'none']))
def test_widths_and_sizes_beyond_memory_are_one_line_never_a_kill(
    planned, tmp_path_factory, algorithm, method, hidden, batch, train_sizes, others, evaluation,
    remat):
  from nar import memory
  out = tmp_path_factory.mktemp('run') / 'run'
  argv = ['train', '-a', algorithm, '--method', method, '--hidden', str(hidden),
          '--batch-size', str(batch), '--out', str(out), '--set', f'train_sizes={train_sizes}',
          '--set', f'remat="{remat}"']
  for k, v in {**others, **evaluation}.items():
    argv += ['--set', f'{k}={v}']
  before = len(planned)
  code, err = _main(argv)
  if code == 0:
    config = planned[-1]
    assert len(planned) == before + 1
    assert memory.plan_training(config, FREE).host <= FREE
  else:
    assert code == 2 and len(planned) == before, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('nar: error: ') and 'Traceback' not in err, err
  assert not out.exists()
