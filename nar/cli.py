"""The `nar` command: train, evaluate, list algorithms, augmentation report, sweeps."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # one line, exit code 2, no traceback
    self.exit(2, f'nar: error: {message}\n')


def _positive_int(text: str) -> int:
  try:
    v = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f'{text!r} is not an integer') from None
  if v <= 0:
    raise argparse.ArgumentTypeError(f'must be a positive integer, got {v}')
  return v


def _add_train_args(p: argparse.ArgumentParser) -> None:
  p.add_argument('--algorithm', '-a', required=True, help='one of `nar algorithms`')
  from nar import registry
  p.add_argument('--method', default='baseline',
                 help='; '.join(f'{e.name}: {e.description}' for e in registry.methods().values())
                 + ' (default: baseline)')
  p.add_argument('--steps', type=_positive_int, default=None)
  p.add_argument('--hidden', type=_positive_int, default=None)
  p.add_argument('--batch-size', type=_positive_int, default=None)
  p.add_argument('--seed', type=int, default=None)
  p.add_argument('--processor', default=None, help='processor kind: dm-clrs\'s or a registered one (default triplet_gmpnn)')
  p.add_argument('--eval-every', type=_positive_int, default=None)
  p.add_argument('--test-size', type=_positive_int, default=None)
  p.add_argument('--precision', default=None,
                 help='float32 (default) | bfloat16 (mixed precision: bfloat16 compute)')
  p.add_argument('--out', default=None, help='run directory (default runs/<algorithm>-<method>-s<seed>)')
  p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                 help='any other TrainConfig field, e.g. --set relic_lambda=0.5 (JSON values)')
  p.add_argument('--quiet', action='store_true')
  g = p.add_argument_group('several hosts (see README, "GPUs, several devices, several hosts")')
  g.add_argument('--coordinator', default=None, metavar='HOST:PORT',
                 help='address of process 0 (all processes pass the same)')
  g.add_argument('--num-processes', type=_positive_int, default=None)
  g.add_argument('--process-id', type=int, default=None)
  g.add_argument('--distributed', action='store_true',
                 help="let JAX detect the cluster (SLURM, Open MPI, ...) from its environment")


def _config_from_args(args):
  from nar.config import TrainConfig
  from nar.overrides import parse_overrides
  values = {'algorithm': args.algorithm, 'method': args.method}
  for name in ('steps', 'hidden', 'batch_size', 'seed', 'processor', 'eval_every', 'test_size',
               'precision', 'out'):
    v = getattr(args, name)
    if v is not None:
      values[name] = v
  values.update(parse_overrides(args.set))
  if 'out' not in values:
    values['out'] = f"runs/{values['algorithm']}-{values['method']}-s{values.get('seed', 42)}"
  config = TrainConfig(**values)
  return config.validate()


def cmd_train(args) -> int:
  config = _config_from_args(args)  # checked before JAX is imported: a bad setting answers at once
  from nar import distributed
  cluster = distributed.resolve(args.coordinator, args.num_processes, args.process_id,
                                auto=args.distributed)
  distributed.initialize(cluster)   # before anything starts a JAX backend
  return _train_and_print(config, args.quiet)


def cmd_run(args) -> int:
  from nar.config import TrainConfig, load_config_file
  return _train_and_print(TrainConfig.from_json(load_config_file(args.config)), args.quiet)


def _train_and_print(config, quiet: bool) -> int:
  from nar.train import train
  results = train(config, progress=not quiet)
  print(f"OOD score ({config.algorithm}, n={results['test_size']}): {results['test_score']:.4f}")
  return 0


def cmd_evaluate(args) -> int:
  from nar.config import ConfigError
  if args.dm_clrs_params:
    if args.run_dir or not args.algorithms:
      raise ConfigError('--dm-clrs-params takes --algorithms and no run directory')
    from nar.interop import evaluate_params, load_dm_clrs_params
    params = load_dm_clrs_params(args.dm_clrs_params)
    names = [a for item in args.algorithms for a in item.split(',') if a]
    if len(names) > 1:
      raise ConfigError('a dm-clrs parameter file of one algorithm (algo_0) is supported; '
                        f'got {len(names)} algorithms')
    res = evaluate_params(params, names[0], size=args.size, processor=args.processor,
                          num_samples=args.samples, progress=not args.quiet)
  else:
    if not args.run_dir:
      raise ConfigError('nar evaluate needs a run directory (or --dm-clrs-params FILE '
                        '--algorithms NAME)')
    from nar.train import evaluate_run
    res = evaluate_run(args.run_dir, size=args.size, progress=not args.quiet,
                       num_samples=args.samples)
  print(json.dumps(res, indent=1))
  return 0


def cmd_export(args) -> int:
  from nar.interop import export_run
  print(json.dumps(export_run(args.run_dir, args.file), indent=1))
  return 0


def cmd_algorithms(args) -> int:
  # From the catalogue, not dm-clrs: answers without importing TensorFlow.
  from nar.catalogue import CLRS30_ALGORITHMS, FAMILIES, HINTS
  family = {a: f for f, members in FAMILIES.items() for a in members}
  rows = [(alg, family[alg], ', '.join(HINTS[alg])) for alg in CLRS30_ALGORITHMS]
  w = max(len(r[0]) for r in rows)
  wf = max(len(r[1]) for r in rows)
  print(f"{'algorithm'.ljust(w)}  {'family'.ljust(wf)}  hints (name:location/type)")
  for a, f, h in rows:
    print(f'{a.ljust(w)}  {f.ljust(wf)}  {h}')
  return 0


def cmd_augment_report(args) -> int:
  from augment import report
  argv = []
  if args.algorithms:
    argv += ['--algorithms', *args.algorithms]
  argv += ['--samples', str(args.samples), '--sizes', args.sizes, '--seed', str(args.seed)]
  if args.out:
    argv += ['--out', args.out]
  return report.main(argv)


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(prog='nar', description=__doc__)
  sub = parser.add_subparsers(dest='command', required=True, parser_class=_Parser)
  p = sub.add_parser('train', help='train one model and print its OOD score')
  _add_train_args(p)
  p.set_defaults(fn=cmd_train)
  p = sub.add_parser('run', help="train from a configuration file (e.g. a run's config.json)")
  p.add_argument('config')
  p.add_argument('--quiet', action='store_true')
  p.set_defaults(fn=cmd_run)
  p = sub.add_parser('evaluate', help="re-evaluate a run's best checkpoint (or a dm-clrs "
                                      "parameter file) at any size")
  p.add_argument('run_dir', nargs='?', default=None)
  p.add_argument('--size', type=_positive_int, default=64, help='test size (default 64)')
  p.add_argument('--samples', type=_positive_int, default=None,
                 help="number of test samples (default: the split's, 32 x multiplier)")
  p.add_argument('--dm-clrs-params', default=None, metavar='FILE',
                 help="a file written by dm-clrs's BaselineModel.save_model (a pickle: "
                      'only files you trust)')
  p.add_argument('--algorithms', nargs='*', default=None, help='with --dm-clrs-params')
  p.add_argument('--processor', default='triplet_gmpnn',
                 help='with --dm-clrs-params: its processor kind (default triplet_gmpnn)')
  p.add_argument('--quiet', action='store_true')
  p.set_defaults(fn=cmd_evaluate)
  p = sub.add_parser('export', help="write a run's best parameters as a dm-clrs parameter "
                                    'file (BaselineModel.restore_model reads it)')
  p.add_argument('run_dir')
  p.add_argument('file')
  p.set_defaults(fn=cmd_export)
  p = sub.add_parser('algorithms', help='list the 30 algorithms with their hints')
  p.set_defaults(fn=cmd_algorithms)
  p = sub.add_parser('augment-report', help='coverage and speed of the augmentations')
  p.add_argument('--algorithms', nargs='*', default=None,
                 help='names, space- or comma-separated (default: every one with a rule)')
  p.add_argument('--samples', type=_positive_int, default=20)
  p.add_argument('--sizes', default='16', help='comma-separated sizes')
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--out', default=None)
  p.set_defaults(fn=cmd_augment_report)
  from experiments import sweep   # a broken experiments import must show, not drop commands
  sweep.add_commands(sub)
  return parser


def _user_errors() -> tuple:
  """The errors reported in one line. Only those of modules the command has
  imported can have been raised: looked up in sys.modules, so that catching them
  imports nothing (no JAX or dm-clrs for `nar algorithms` or a bad argument)."""
  from nar.config import ConfigError
  from nar.errors import RunError
  errors = [ConfigError, RunError]
  for module, name in (('nar.checkpoint', 'CheckpointError'),
                       ('augment.core', 'UnsupportedAlgorithmError')):   # Hint-ReLIC, no rule
    if module in sys.modules:
      errors.append(getattr(sys.modules[module], name))
  return tuple(errors)


def main(argv: Optional[list[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    return args.fn(args)
  except KeyboardInterrupt:
    print('nar: interrupted', file=sys.stderr)
    return 130
  except Exception as e:  # pylint: disable=broad-except
    if not isinstance(e, _user_errors()):
      raise
    print(f'nar: error: {e}', file=sys.stderr)
    return 2


if __name__ == '__main__':
  sys.exit(main())
