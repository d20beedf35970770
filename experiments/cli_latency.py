"""How long the command line takes to answer, and what it prints first.

Times commands that should answer at once (no dm-clrs, TensorFlow or JAX
import) as fresh processes, the way a user meets them, and prints the seconds
(median over --repeats) and each command's first line of output:

    python -m experiments.cli_latency
    python -m experiments.cli_latency --repeats 5 --command 'algorithms' --command '--help'

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
import time

COMMANDS = ('algorithms', 'train -a nope')


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
  args = parser.parse_args(argv)
  for command in args.command or COMMANDS:
    seconds, code, first = time_command(shlex.split(command), args.repeats)
    print(f'nar {command}: {seconds:.2f} s (median of {args.repeats}, exit code {code}); '
          f'first line: {first[:80]}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
