"""Checks that need no data answer before JAX, dm-clrs or any data loads, and say
what the checks run later would say."""

import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from nar import catalogue, preflight, registry
from nar.config import ConfigError, TrainConfig
from nar.errors import RunError, RunInUseError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _verdict(check, config):
  try:
    check(config)
  except ConfigError as e:
    return str(e)
  return None


hint_names = sorted({h.split(':')[0] for hs in catalogue.HINTS.values() for h in hs})


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(method=st.sampled_from(sorted(registry.methods())),
       algorithms=st.lists(st.sampled_from(catalogue.CLRS30_ALGORITHMS), min_size=1, max_size=3,
                           unique=True),
       hints=st.one_of(st.just('all'), st.just(','), st.just(' '),
                       st.lists(st.sampled_from(hint_names + ['nope', 'all']), min_size=1,
                                max_size=3).map(','.join)),
       twin=st.sampled_from(['rollout', 'step']))
def test_the_early_check_says_what_check_runnable_says(method, algorithms, hints, twin):
  from nar.methods import check_runnable
  config = TrainConfig(algorithm=','.join(algorithms), method=method, relic_hints=hints,
                       relic_twin=twin).validate()
  assert _verdict(preflight.check_method_settings, config) == _verdict(check_runnable, config)


@pytest.mark.parametrize('algorithm', ['segments_intersect', 'bfs,segments_intersect',
                                       'segments_intersect,bfs'])
def test_each_algorithm_without_rule_is_judged_as_late(algorithm):
  from nar.methods import check_runnable
  config = TrainConfig(algorithm=algorithm, method='hint_relic').validate()
  assert _verdict(preflight.check_method_settings, config) == _verdict(check_runnable, config)


def _config(out, **kw):
  return TrainConfig(**{'algorithm': 'bfs', 'hidden': 8, 'out': str(out), **kw}).validate()


def test_a_file_as_the_run_directory_is_refused(tmp_path):
  f = tmp_path / 'file'
  f.write_text('x')
  with pytest.raises(ConfigError, match='is a file, not a directory'):
    preflight.check_run_directory(_config(f))
  with pytest.raises(ConfigError, match='cannot be created: .* is a file'):
    preflight.check_run_directory(_config(f / 'run'))
  preflight.check_run_directory(_config(tmp_path / 'new' / 'run'))      # nothing in the way
  assert not (tmp_path / 'new').exists()                                 # and nothing written


def test_a_run_directory_in_use_or_of_other_settings_is_refused(tmp_path):
  from nar.train import RunDir
  out = tmp_path / 'run'
  run = RunDir(str(out))
  run.prepare(_config(out))
  try:
    with pytest.raises(RunInUseError, match='in use by another process'):
      preflight.check_run_directory(_config(out))
  finally:
    run.unlock()
  preflight.check_run_directory(_config(out, hidden=16))    # nothing saved yet: replaced later
  os.makedirs(out / 'checkpoints' / 'step-00000002')
  with pytest.raises(RunError, match=r'holds a run with another configuration \(hidden: saved 8, '
                                     r'now 16\)'):
    preflight.check_run_directory(_config(out, hidden=16))
  preflight.check_run_directory(_config(out, steps=5))      # a resumable difference
  (out / 'config.json').write_text('{"algorithm": ')
  with pytest.raises(RunError, match='cannot read configuration .*; move it away'):
    preflight.check_run_directory(_config(out))


def test_runs_to_evaluate_or_export_are_checked(tmp_path):
  with pytest.raises(RunError, match='not a run directory'):
    preflight.check_run_to_evaluate(str(tmp_path / 'none'))
  (tmp_path / 'config.json').write_text(
      '{"algorithm": "bfs", "method": "baseline", "hidden": 0}')
  with pytest.raises(ConfigError, match='hidden must be a positive integer'):
    preflight.check_run_to_evaluate(str(tmp_path))
  (tmp_path / 'config.json').write_text('{"algorithm": "bfs", "method": "baseline"}')
  with pytest.raises(RunError, match='no best checkpoint yet'):
    preflight.check_run_to_evaluate(str(tmp_path))
  os.makedirs(tmp_path / 'checkpoints' / 'step-00000001')
  assert preflight.check_run_to_evaluate(str(tmp_path)).algorithm == 'bfs'
  with pytest.raises(RunError, match='no best checkpoint yet'):
    preflight.check_run_to_evaluate(str(tmp_path), best_only=True)


# The examples of errors that need no data (experiments/cli_latency.py
# --setting-errors times them as fresh processes).
@pytest.mark.parametrize('argv, expected', [
    (['train', '-a', 'bfs', '--out', '{file}'], 'is a file, not a directory'),
    (['train', '-a', 'bfs', '--method', 'hint_relic', '--set', 'relic_hints=foo',
      '--out', '{dir}/r'], "relic_hints: unknown hints ['foo']"),
    (['train', '-a', 'segments_intersect', '--method', 'hint_relic', '--out', '{dir}/r'],
     'segments_intersect has none'),
    (['evaluate', '{dir}/notarun'], 'not a run directory'),
    (['export', '{dir}/notarun', '{dir}/x.pkl'], 'not a run directory'),
    (['evaluate', '--dm-clrs-params', '{file}'], 'not a dm-clrs parameter file'),
    (['run', '{dir}/config.json'], 'is a file, not a directory'),
])
def test_errors_that_need_no_data_answer_without_jax_or_dm_clrs(argv, expected, tmp_path):
  f = tmp_path / 'a-file'
  f.write_text('x')
  (tmp_path / 'config.json').write_text(
      '{"algorithm": "bfs", "method": "baseline", "out": "%s"}' % f)
  argv = [a.format(file=f, dir=tmp_path) for a in argv]
  code = ('import sys\n'
          'from nar import cli\n'
          f'code = cli.main({argv!r})\n'
          'print(code, sorted(m for m in ("clrs", "tensorflow", "jax", "augment") '
          'if m in sys.modules))\n')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
  assert out.stdout.strip().splitlines()[-1] == '2 []', out.stdout + out.stderr
  lines = out.stderr.strip().splitlines()
  assert lines[-1].startswith('nar: error: ') and expected in lines[-1], out.stderr


def test_string_matchers_need_sizes_their_sampler_can_draw(tmp_path):
  from nar import sample
  assert set(preflight.STRING_MATCHERS) == set(sample.STRING_MATCHERS)
  assert sample.protocol_kwargs('kmp_matcher', 'train')['length_needle'] == (
      -preflight.LONGEST_NEEDLE)
  for algorithm in ('kmp_matcher', 'bfs,naive_string_matcher'):
    with pytest.raises(ConfigError, match='train_sizes needs a size >= 14'):
      preflight.check_sizes(TrainConfig(algorithm=algorithm, train_sizes=(4, 13)).validate())
    with pytest.raises(ConfigError, match='val_size needs >= 17'):
      preflight.check_sizes(TrainConfig(algorithm=algorithm, val_size=16).validate())
  preflight.check_sizes(TrainConfig(algorithm='kmp_matcher', train_sizes=(4, 14),
                                    val_size=17).validate())
  preflight.check_sizes(TrainConfig(algorithm='bfs', train_sizes=(4,)).validate())
  # The smallest accepted sizes can be drawn (the largest needle included).
  from nar import data as data_lib
  for seed in range(20):
    data_lib.make_train_samples('kmp_matcher', seed, 0, 8, (14,))
    data_lib.generate_split('naive_string_matcher', 'val', 17, seed, 8)
