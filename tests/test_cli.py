"""The CLI: clear one-line errors with exit code 2 for bad input."""

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
