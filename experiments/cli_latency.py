"""How long the command line takes to answer, and what it prints first.

Times commands that should answer at once (no dm-clrs, TensorFlow or JAX
import) as fresh processes, the way a user meets them, and prints the seconds
(median over --repeats) and each command's first line of output:

    python -m experiments.cli_latency
    python -m experiments.cli_latency --repeats 5 --command 'algorithms' --command '--help'
    python -m experiments.cli_latency --setting-errors     # errors that need no data

A measurement, not a test: the seconds depend on the machine and its load.
`tests/test_cli.py` checks what these commands print (nothing before their own
output), not how fast.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = ('algorithms', 'train -a nope')
# Setting errors that need no data (issue 45): each must answer in one line, exit
# code 2, within a second; {file} is an existing file, {dir} an empty directory.
SETTING_ERRORS = (
    'train -a bfs --out {file}',
    'train -a bfs --method hint_relic --set relic_hints=foo --out {dir}/run',
    'train -a segments_intersect --method hint_relic --out {dir}/run',
    'evaluate {dir}/notarun',
    'export {dir}/notarun {dir}/params.pkl',
    'evaluate --dm-clrs-params {file}',
    'train -a kmp_matcher --set train_sizes=[4,8] --out {dir}/run',
)


def time_command(args: list[str], repeats: int) -> tuple[float, int, str]:
  """(median seconds, exit code, first output line) of `python -m nar.cli ARGS`."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  seconds, result = [], None
  for _ in range(repeats):
    start = time.perf_counter()
    result = subprocess.run([sys.executable, '-m', 'nar.cli', *args], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds.append(time.perf_counter() - start)
  lines = result.stdout.splitlines()   # stdout and stderr, in the order written
  return statistics.median(seconds), result.returncode, (lines[0] if lines else '')


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m experiments.cli_latency',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--command', action='append', default=None,
                      help=f'arguments of `nar`, quoted (default: {", ".join(COMMANDS)})')
  parser.add_argument('--setting-errors', action='store_true',
                      help='time the setting errors that need no data (each must answer in '
                           'one line, exit code 2, under 1 s)')
  args = parser.parse_args(argv)
  commands = args.command or (SETTING_ERRORS if args.setting_errors else COMMANDS)
  with tempfile.TemporaryDirectory() as tmp:
    afile = os.path.join(tmp, 'a-file')
    with open(afile, 'w') as f:
      f.write('not a run directory, not a parameter file')
    slowest = 0.0
    for command in commands:
      command = command.format(file=afile, dir=tmp)
      seconds, code, first = time_command(shlex.split(command), args.repeats)
      slowest = max(slowest, seconds)
      print(f'nar {command.replace(tmp, "TMP")}: {seconds:.2f} s (median of {args.repeats}, '
            f'exit code {code}); first line: {first.replace(tmp, "TMP")[:100]}')
    if args.setting_errors:
      print(f'slowest: {slowest:.2f} s ({"under" if slowest < 1 else "NOT under"} 1 s)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
