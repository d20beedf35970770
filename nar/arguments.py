"""The training command's arguments: `nar train`'s flags and the `TrainConfig`
they make. Plain argparse, no JAX: the CLI and the tools that take the same
flags (`experiments.compile_profile`) build their parsers from here."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
  try:
    v = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f'{text!r} is not an integer') from None
  if v <= 0:
    raise argparse.ArgumentTypeError(f'must be a positive integer, got {v}')
  return v


def min_size(text: str) -> int:
  v = positive_int(text)
  if v < 4:
    raise argparse.ArgumentTypeError(f'must be >= 4 (smaller problems mean nothing), got {v}')
  return v


def min_sizes(text: str) -> list:
  return [min_size(part) for part in text.split(',') if part.strip()] or [min_size(text)]


class ListSettings(argparse.Action):
  """`--list-settings`: every --set key with its type, default and meaning, then exit."""

  def __init__(self, option_strings, dest, **kwargs):
    super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

  def __call__(self, parser, namespace, values, option_string=None):
    from nar.config import settings_table
    rows = settings_table()
    w = [max(len(r[k]) for r in rows) for k in range(3)]
    lines = [f"{'key'.ljust(w[0])}  {'type'.ljust(w[1])}  {'default'.ljust(w[2])}  description"]
    lines += [f'{k.ljust(w[0])}  {t.ljust(w[1])}  {d.ljust(w[2])}  {h}' for k, t, d, h in rows]
    print('\n'.join(lines))
    parser.exit(0)


def add_train_args(p: argparse.ArgumentParser) -> None:
  import dataclasses
  from nar.config import TrainConfig
  fields = {f.name: f for f in dataclasses.fields(TrainConfig)}

  def explain(name: str, extra: str = '') -> str:
    f = fields[name]
    return f"{f.metadata['rule'].help}{extra} (default {f.default})"

  p.add_argument('--algorithm', '--algorithms', '-a', dest='algorithm', required=True,
                 help="one of `nar algorithms`, or several joined by ',' or '+' (multi-task: "
                      'one network, shared processor, algorithms in turn), or all (the 30)')
  from nar import registry
  p.add_argument('--method', default='baseline',
                 help='; '.join(f'{e.name}: {e.description}' for e in registry.methods().values())
                 + ' (default: baseline)')
  p.add_argument('--steps', type=positive_int, default=None, help=explain('steps'))
  p.add_argument('--hidden', type=positive_int, default=None, help=explain('hidden'))
  p.add_argument('--batch-size', type=positive_int, default=None, help=explain('batch_size'))
  p.add_argument('--seed', type=int, default=None, help=explain('seed', ', 0 to 2^31-1'))
  p.add_argument('--processor', default=None, help=explain('processor'))
  p.add_argument('--eval-every', type=positive_int, default=None, help=explain('eval_every'))
  p.add_argument('--test-size', type=min_size, default=None, help=explain('test_size'))
  p.add_argument('--precision', default=None,
                 help='float32 | bfloat16 (mixed precision: bfloat16 compute; default float32)')
  p.add_argument('--log', default=None, metavar='TRACKERS',
                 help='experiment tracking besides metrics.jsonl: tensorboard, wandb (offline) '
                      'or both, comma-separated (pip install "nar-hint-relic[tensorboard,wandb]"; '
                      'default none)')
  p.add_argument('--out', default=None, help='run directory (default runs/<algorithm>-<method>-s<seed>)')
  p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                 help='any other TrainConfig field, e.g. --set relic_lambda=0.5 (JSON values); '
                      '--list-settings lists them')
  p.add_argument('--list-settings', action=ListSettings,
                 help='list every --set key with its type, default and meaning, and exit')
  p.add_argument('--quiet', action='store_true', help='no progress output')
  g = p.add_argument_group('several hosts (see docs/devices.md)')
  g.add_argument('--coordinator', default=None, metavar='HOST:PORT',
                 help='address of process 0 (all processes pass the same)')
  g.add_argument('--num-processes', type=positive_int, default=None)
  g.add_argument('--process-id', type=int, default=None)
  g.add_argument('--distributed', action='store_true',
                 help="let JAX detect the cluster (SLURM, Open MPI, ...) from its environment")


def config_from_args(args):
  from nar.config import TrainConfig, default_out
  from nar.overrides import parse_overrides
  # '+' (`nar sweep`'s multi-task separator) is accepted too; the config keeps ','.
  values = {'algorithm': args.algorithm.replace('+', ','), 'method': args.method}
  for name in ('steps', 'hidden', 'batch_size', 'seed', 'processor', 'eval_every', 'test_size',
               'precision', 'out', 'log'):
    v = getattr(args, name)
    if v is not None:
      values[name] = v
  values.update(parse_overrides(args.set))
  if 'out' not in values:
    values['out'] = default_out(values['algorithm'], values['method'], values.get('seed', 42))
  config = TrainConfig(**values)
  return config.validate()
