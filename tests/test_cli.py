"""The CLI: clear one-line errors with exit code 2 for bad input."""

import os
import subprocess
import sys

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


def test_augment_report_rejects_an_unknown_name_in_one_line(capsys):
  with pytest.raises(SystemExit) as e:
    main(['augment-report', '--algorithms', 'bfs', 'bogosort'])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert "unknown algorithm 'bogosort'" in err and len(err.splitlines()) == 1
