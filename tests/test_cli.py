"""The CLI: clear one-line errors with exit code 2 for bad input."""

import os
import subprocess
import sys
import json

import pytest

from nar.cli import main


@pytest.mark.parametrize('argv, expected', [
    (['train', '--algorithm', 'bogosort'], "unknown algorithm 'bogosort'"),
    (['train', '--algorithm', 'bfs', '--steps', '0'], 'positive integer'),
    (['train', '--algorithm', 'bfs', '--processor', 'transformer'], "unknown processor"),
    (['train', '--algorithm', 'bfs', '--method', 'magic'], "unknown method"),
    (['train', '--algorithm', 'bfs', '--set', 'nonsense=1'], "unknown configuration key"),
    (['train', '--algorithm', 'bfs', '--out', '/proc/nar-not-writable'], 'not writable'),
    (['evaluate', '/nonexistent/run'], 'not a run directory'),
    (['train', '--algorithm', 'bfs', '--set', 'learning_rate="fast"'], 'must be a number'),
    (['train', '--algorithm', 'bfs', '--set', 'train_sizes=[4, "x"]'], 'list of integers'),
    (['train', '--algorithm', 'bfs', '--set', 'relic_lambda=-1'], 'must be >= 0'),
    (['sweep', '--algorithms', 'bfs', '--out', '/tmp/x', '--shard', '5/2'], 'shard'),
])
def test_bad_input_is_one_line_exit_2(argv, expected, capsys):
  with pytest.raises(SystemExit) as e:
    raise SystemExit(main(argv))
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert expected in err and len(err.splitlines()) == 1 and 'Traceback' not in err


def test_algorithms_lists_all_thirty(capsys):
  assert main(['algorithms']) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 31 and lines[1].split()[0] == 'activity_selector'


# ------------------------------------------------------------- a quiet command line
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _nar(*args):
  env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
  return subprocess.run([sys.executable, '-m', 'nar.cli', *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=120)


def test_algorithms_prints_nothing_before_its_table():
  result = _nar('algorithms')
  assert result.returncode == 0 and result.stderr == ''
  assert result.stdout.splitlines()[0].startswith('algorithm ')
  assert len(result.stdout.splitlines()) == 31


def test_unknown_algorithm_is_the_only_line():
  result = _nar('train', '-a', 'nope')
  assert result.returncode == 2 and result.stdout == ''
  assert result.stderr.splitlines() == [result.stderr.strip()]
  assert result.stderr.startswith("nar: error: unknown algorithm 'nope'")


def test_answers_without_dm_clrs_or_jax():
  code = ('import sys\n'
          'from nar import cli\n'
          'cli.main(["algorithms"])\n'
          'assert cli.main(["train", "-a", "nope"]) == 2\n'
          'print(sorted(m for m in ("clrs", "tensorflow", "jax") if m in sys.modules))\n')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                       check=True)
  assert out.stdout.strip().splitlines()[-1] == '[]'


def test_dm_clrs_import_prints_no_start_up_noise():
  env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
  code = 'import jax\nimport nar.clrs_import\nimport clrs\n'   # jax first: the noisiest order
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True,
                       text=True, check=True)
  from nar.clrs_import import is_noise
  assert not [line for line in out.stderr.splitlines() if is_noise(line)], out.stderr


def test_start_up_filter_keeps_real_lines(capfd):
  from nar.clrs_import import filtered_stderr
  with filtered_stderr():
    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are '
                b'written to STDERR\n'
                b'I0000 00:00:1795630183.441204    6136 cudart_stub.cc:31] Could not find '
                b'cuda drivers on your machine, GPU will not be used.\n'
                b'E0000 00:00:1795630192.403947    6136 cuda_platform.cc:52] failed call to '
                b'cuInit: INTERNAL: CUDA error\n'
                b'E0000 00:00:1795630192.403947    6136 loader.cc:7] a real error\n'
                b'Traceback: something else\n')
  assert capfd.readouterr().err == ('E0000 00:00:1795630192.403947    6136 loader.cc:7] a real '
                                    'error\nTraceback: something else\n')
  with pytest.raises(ImportError):
    with filtered_stderr():
      os.write(2, b'I0000 00:00:1.0 1 x.cc:1] context of a failure\n')
      raise ImportError('broken')
  assert 'context of a failure' in capfd.readouterr().err     # a failure shows everything


@pytest.mark.parametrize('names', [['bfs', 'dfs'], ['bfs,dfs'], ['bfs,', 'dfs']])
def test_augment_report_takes_names_space_or_comma_separated(names, monkeypatch, capsys):
  from augment import report
  asked = []
  monkeypatch.setattr(report, 'coverage_table',
                      lambda algorithms, *a: asked.append(list(algorithms)) or [])
  assert main(['augment-report', '--algorithms', *names, '--samples', '1']) == 0
  assert asked == [['bfs', 'dfs']]


@pytest.mark.parametrize('given', ['insertion_sort,bfs', 'insertion_sort+bfs'])
def test_train_takes_a_multi_task_run_joined_by_comma_or_plus(given):
  """Arguments only: the configuration `nar train` would run, nothing trained."""
  from nar.cli import _config_from_args, build_parser
  config = _config_from_args(build_parser().parse_args(['train', '--algorithms', given]))
  assert config.algorithm == 'insertion_sort,bfs'
  assert config.out == 'runs/insertion_sort+bfs-baseline-s42'


def test_sweep_takes_a_multi_task_run_joined_by_plus_or_comma(monkeypatch, tmp_path):
  """Arguments only (the sweep itself replaced): names separated by spaces are
  separate runs, 'a+b' and 'a,b' the same one multi-task run."""
  from experiments import protocols
  from experiments import sweep as sw
  asked = []
  monkeypatch.setattr(sw, 'sweep', lambda protocol, algorithms, *a, **k: asked.append(algorithms)
                      or [])
  assert main(['sweep', '--algorithms', 'bfs', 'insertion_sort,bfs,dfs', 'insertion_sort+bfs',
               '--out', str(tmp_path)]) == 0
  assert asked == [['bfs', 'insertion_sort+bfs+dfs', 'insertion_sort+bfs']]
  assert protocols.algorithm_entries(['dfs,bfs', 'dfs+bfs']) == ['dfs+bfs', 'dfs+bfs']


def test_augment_report_rejects_an_unknown_name_in_one_line(capsys):
  with pytest.raises(SystemExit) as e:
    main(['augment-report', '--algorithms', 'bfs', 'bogosort'])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert "unknown algorithm 'bogosort'" in err and len(err.splitlines()) == 1
def _one_line_exit_2(argv, capsys):
  with pytest.raises(SystemExit) as e:
    raise SystemExit(main(argv))
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and err.startswith('nar: error: ') and 'Traceback' not in err
  return err


@pytest.mark.parametrize('argv, expected', [
    (['--seed', '-1'], 'seed must be >= 0'),
    (['--seed', str(10 ** 20)], 'seed must be <= '),
    (['--seed', '1.5'], "invalid int value: '1.5'"),
    (['--set', 'seed=1.5'], 'seed must be an integer'),
    (['--set', 'seed="7"'], 'seed must be an integer'),
    (['--set', 'grad_clip=NaN'], 'grad_clip must be a finite number'),
    (['--set', 'relic_lambda=Infinity'], 'relic_lambda must be a finite number'),
    (['--set', 'learning_rate=1e400'], 'learning_rate must be a finite number'),
    (['--set', 'out=5'], 'out must be a non-empty text'),
    (['--set', 'cache_dir=[]'], 'cache_dir must be a non-empty text'),
    (['--set', 'relic_contrast="yes"'], 'relic_contrast must be true or false'),
    (['--set', 'val_size=true'], 'val_size must be an integer'),
    (['--set', 'val_size=2'], 'val_size must be >= 4'),
    (['--set', 'relic_twin=null'], 'unknown relic_twin None'),
    (['--set', 'train_sizes=7'], 'train_sizes must be a list of integers'),
    (['--test-size', '2'], 'must be >= 4'),
    (['--method', 'hint_relic', '--set', 'relic_hints="nope"'], "relic_hints: unknown hints"),
    (['--method', 'hint_relic', '--set', 'relic_hints=","'], 'selects no hint'),
])
def test_hostile_settings_are_one_line_and_write_nothing(argv, expected, tmp_path, capsys):
  out = tmp_path / 'run'
  err = _one_line_exit_2(['train', '-a', 'bfs', '--out', str(out), *argv], capsys)
  assert expected in err
  assert not out.exists()         # nothing that would block the corrected command


def test_hint_relic_without_an_augmentation_rule_names_the_supported(tmp_path, capsys):
  out = tmp_path / 'run'
  err = _one_line_exit_2(['train', '-a', 'segments_intersect', '--method', 'hint_relic',
                          '--out', str(out)], capsys)
  assert 'segments_intersect has none; supported: activity_selector' in err
  assert not out.exists()


def test_evaluation_too_small_is_refused(capsys):
  assert 'must be >= 4' in _one_line_exit_2(['evaluate', '/tmp/x', '--size', '2'], capsys)


@pytest.mark.parametrize('content, expected', [
    (b'{"algorithm": "bfs", "method": "baseline", "hidden": 8', 'cannot read configuration'),
    (b'\xff\xfe garbage', 'cannot read configuration'),
    (b'[1, 2, 3]', 'not a JSON object'),
    (b'{"algorithm": "bfs", "hidden": 8}', 'lacks method'),
    (b'{"method": "baseline"}', 'lacks algorithm'),
    (b'{"algorithm": "bfs", "method": "baseline", "grad_clip": NaN}', 'finite'),
    (b'{"algorithm": "bfs", "test": {"score": 1.0}, "test_score": 1.0}', 'unknown configuration'),
])
def test_run_with_a_malformed_or_foreign_file_is_one_line_naming_it(content, expected,
                                                                     tmp_path, capsys):
  path = tmp_path / 'config.json'
  path.write_bytes(content)
  err = _one_line_exit_2(['run', str(path)], capsys)
  assert expected in err and str(path) in err
  err = _one_line_exit_2(['run', str(tmp_path)], capsys)       # a directory
  assert str(tmp_path) in err


def test_evaluate_of_a_run_with_a_malformed_config_names_it(tmp_path, capsys):
  (tmp_path / 'config.json').write_text('{"algorithm": ')
  err = _one_line_exit_2(['evaluate', str(tmp_path)], capsys)
  assert str(tmp_path / 'config.json') in err


@pytest.mark.parametrize('results, expected', [
    ('{"algorithm": "bfs", "method": "baseline", "seed": 0, "test_score": 0.9', 'unreadable'),
    ('[1, 2]', 'not the results of a run'),
    ('{"algorithm": "bfs", "method": "baseline", "seed": 0}', 'test_score'),
    ('{"algorithm": "bfs", "method": "baseline", "seed": [0], "test_score": 0.5}', 'seed'),
])
def test_report_of_malformed_results_is_one_line_naming_the_file(results, expected, tmp_path,
                                                                 capsys):
  run = tmp_path / 'bfs' / 'baseline' / 'seed0'
  run.mkdir(parents=True)
  (run / 'results.json').write_text(results)
  err = _one_line_exit_2(['report', str(tmp_path)], capsys)
  assert expected in err and str(run / 'results.json') in err


def test_report_of_a_malformed_sweep_record_names_it(tmp_path, capsys):
  run = tmp_path / 'bfs' / 'baseline' / 'seed0'
  run.mkdir(parents=True)
  (run / 'results.json').write_text(
      '{"algorithm": "bfs", "method": "baseline", "seed": 0, "test_score": 0.5,'
      ' "best_val": [1], "timings": "x"}')
  (run / 'metrics.jsonl').write_text('{"kind": "val", "step": 1, "score": 0.5}\n{"kind": "va')
  (tmp_path / 'sweep.json').write_text('{"seeds": "three"}')
  err = _one_line_exit_2(['report', str(tmp_path)], capsys)
  assert str(tmp_path / 'sweep.json') in err
  (tmp_path / 'sweep.json').write_text('{"seeds": 1}')
  assert main(['report', str(tmp_path)]) == 0       # odd fields and a torn metrics line: left out
  assert '| bfs | 50.00' in capsys.readouterr().out


def test_a_start_that_saved_nothing_does_not_block_other_settings(tmp_path):
  from nar.config import TrainConfig
  from nar.train import RunDir
  out = str(tmp_path / 'run')
  messages = []
  run = RunDir(out)
  assert run.prepare(TrainConfig(algorithm='bfs', hidden=512, out=out).validate()) is False
  run.unlock()              # e.g. it ran out of memory before its first checkpoint
  run = RunDir(out)
  assert run.prepare(TrainConfig(algorithm='bfs', hidden=256, out=out).validate(),
                     report=messages.append) is False
  run.unlock()
  assert 'saved nothing' in messages[0]
  assert json.load(open(run.config))['hidden'] == 256


def test_ctrl_c_inside_a_garbage_collector_callback_is_not_lost():
  """JAX registers a gc callback that runs often while `nar` starts, and Python drops
  a KeyboardInterrupt raised inside one. `nar` raises none: whatever the moment, the
  process ends at once with exit code 130 and its line."""
  code = ('import gc, os, signal, sys, time\n'
          'from nar import cli\n'
          'def callback(phase, info):\n'
          '  if phase == "start":\n'
          '    os.kill(os.getpid(), signal.SIGINT)\n'
          'def slow(args):\n'
          '  gc.callbacks.append(callback)\n'
          '  gc.collect()\n'
          '  time.sleep(30)\n'
          '  print("not stopped")\n'
          '  return 0\n'
          'cli.cmd_algorithms = slow\n'
          'sys.exit(cli.main(["algorithms"]))\n')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
  assert out.returncode == 130 and out.stdout == '', out
  assert out.stderr == 'nar: stopped by SIGINT; nothing was saved\n'


def test_a_run_directory_with_an_unreadable_config_says_what_to_do(tmp_path):
  from nar.config import TrainConfig
  from nar.train import RunDir, RunError
  (tmp_path / 'config.json').write_text('{"algorithm": "bf')
  run = RunDir(str(tmp_path))
  with pytest.raises(RunError, match='cannot read configuration .*; move it away'):
    run.prepare(TrainConfig(algorithm='bfs', out=str(tmp_path)).validate())
  run.unlock()


def test_nar_run_names_what_a_file_leaves_out_and_places_the_run_as_nar_train(tmp_path,
                                                                              monkeypatch,
                                                                              capsys):
  """One treatment of a configuration file: `algorithm` and `method` required (see
  test_run_with_a_malformed_or_foreign_file_is_one_line_naming_it), every other
  setting it does not name shown with the value it takes before anything runs,
  and `out` where `nar train` would put the run."""
  import dataclasses
  from nar import cli
  from nar.config import TrainConfig
  seen = []
  monkeypatch.setattr(cli, '_train_and_print', lambda config, quiet: seen.append(config) or 0)
  monkeypatch.chdir(tmp_path)
  path = tmp_path / 'cfg.json'
  path.write_text('{"algorithm": "bfs", "method": "baseline", "hidden": 8, "seed": 3}')
  assert main(['run', str(path)]) == 0
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and err.startswith(f'nar: {path} does not name ')
  assert 'steps=10000' in err and 'out="runs/bfs-baseline-s3"' in err and ' hidden=' not in err
  assert seen[-1].out == 'runs/bfs-baseline-s3' and seen[-1].steps == 10000
  # What `nar train` names the same run; a setting added after runs were saved takes
  # the value those runs had (and the line says so).
  from nar.config import LEGACY_VALUES
  assert all(f'{k}={json.dumps(v)}' in err for k, v in LEGACY_VALUES.items())
  assert main(['train', '-a', 'bfs', '--hidden', '8', '--seed', '3']) == 0
  assert seen[-2] == dataclasses.replace(seen[-1], **LEGACY_VALUES)
  # A run's own config.json names everything: nothing to say.
  path.write_text(json.dumps(TrainConfig(algorithm='bfs', out=str(tmp_path / 'r')).to_json()))
  capsys.readouterr()
  assert main(['run', str(path)]) == 0
  assert capsys.readouterr().err == ''
