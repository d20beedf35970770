"""The `nar` command: train, evaluate, list algorithms, augmentation report, sweeps."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional

from nar.arguments import add_train_args as _add_train_args
from nar.arguments import config_from_args as _config_from_args
from nar.arguments import min_sizes as _min_sizes
from nar.arguments import positive_int as _positive_int


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # one line, exit code 2, no traceback
    self.exit(2, f'nar: error: {message}\n')


def cmd_train(args) -> int:
  config = _config_from_args(args)  # checked before JAX is imported: a bad setting answers at once
  from nar import preflight
  several = (args.coordinator or args.distributed
             or any(os.environ.get(v) for v in ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES')))
  # With several processes only process 0 owns the directory: it checks it itself.
  (preflight.check_method_settings if several else preflight.check_training)(config)
  _note_run(config.out)
  from nar import distributed
  cluster = distributed.resolve(args.coordinator, args.num_processes, args.process_id,
                                auto=args.distributed)
  distributed.initialize(cluster)   # before anything starts a JAX backend
  return _train_and_print(config, args.quiet)


def cmd_run(args) -> int:
  from nar.config import load_run_file
  config, taken = load_run_file(args.config)
  if taken:     # shown before anything runs: what the file leaves out is not silent
    print(f'nar: {args.config} does not name ' + ', '.join(
        f'{k}={json.dumps(v)}' for k, v in taken.items()) + ' (taken as shown: '
        '`nar train --list-settings` for their meaning)', file=sys.stderr, flush=True)
  from nar.preflight import check_training
  check_training(config)
  _note_run(config.out)
  return _train_and_print(config, args.quiet)


def _train_and_print(config, quiet: bool) -> int:
  from nar.train import train
  results = train(config, progress=not quiet)
  for name, r in (results.get('per_algorithm') or {config.algorithm: results}).items():
    print(f"OOD score ({name}, n={results['test_size']}): {r['test_score']:.4f}")
  print(f'run directory: {config.out} (results.json, metrics.jsonl, checkpoints/)')
  return 0


def cmd_evaluate(args) -> int:
  from nar.config import ConfigError
  if args.dm_clrs_params:
    if args.run_dir:
      raise ConfigError('--dm-clrs-params takes no run directory')
    from nar.interop import evaluate_params_sizes, file_config, read_dm_clrs_file
    file = read_dm_clrs_file(args.dm_clrs_params)    # checked in full before anything is built
    names = [a for item in args.algorithms or [] for a in item.split(',') if a]
    file_config(file, names, args.processor)
    res = evaluate_params_sizes(file, names or None, args.size, processor=args.processor,
                                num_samples=args.samples, progress=not args.quiet)
  else:
    if not args.run_dir:
      raise ConfigError('nar evaluate needs a run directory (or --dm-clrs-params FILE '
                        '--algorithms NAME)')
    from nar.preflight import check_run_to_evaluate
    for run_dir in args.run_dir:      # every one, before any is evaluated
      check_run_to_evaluate(run_dir)
    if args.invariance:
      print(json.dumps(_invariance(args), indent=1))
      return 0
    from nar.eval_run import evaluate_run_sizes
    res = [r for run_dir in args.run_dir
           for r in evaluate_run_sizes(run_dir, args.size, progress=not args.quiet,
                                       num_samples=args.samples)]
  res = res[0] if len(res) == 1 else res
  print(json.dumps(res, indent=1))
  return 0


def _invariance(args):
  """`nar evaluate RUN --invariance`: one result per run directory."""
  from nar.eval_run import evaluate_invariance
  res = [{'run': run_dir, **evaluate_invariance(run_dir, num_samples=args.samples or 64,
                                                 pairs_per_twin=args.pairs,
                                                 progress=not args.quiet)}
         for run_dir in args.run_dir]
  return res[0] if len(res) == 1 else res


def cmd_export(args) -> int:
  from nar.preflight import check_run_to_evaluate
  check_run_to_evaluate(args.run_dir, best_only=True)
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
  p.add_argument('run_dir', nargs='*', default=None,
                 help='run directories (each best checkpoint is tested; results are also '
                      'kept in the run\'s evaluations.json)')
  p.add_argument('--size', type=_min_sizes, default=[64],
                 help='problem size, or comma-separated sizes: 16,32,64,128 (default 64)')
  p.add_argument('--samples', type=_positive_int, default=None,
                 help="number of test samples (default: the split's, 32 x multiplier)")
  p.add_argument('--dm-clrs-params', default=None, metavar='FILE',
                 help="a file written by dm-clrs's BaselineModel.save_model (a pickle: "
                      'only files you trust)')
  p.add_argument('--invariance', action='store_true',
                 help='instead of the score: how invariant the next step is across twins '
                      '(retrieval, prediction agreement, similarity; on --samples validation '
                      'originals, default 64; kept in evaluations.json)')
  p.add_argument('--pairs', type=_positive_int, default=8,
                 help='with --invariance: valid step pairs per twin (default 8)')
  p.add_argument('--algorithms', nargs='*', default=None,
                 help="with --dm-clrs-params: the file's algorithms in its order (algo_0 "
                      'first); a file `nar export` wrote names them itself')
  p.add_argument('--processor', default=None,
                 help="with --dm-clrs-params: its processor kind (default: the one `nar "
                      "export` recorded, else triplet_gmpnn)")
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


# The stop signals and their rule (docs/troubleshooting.md, "Processes and signals"):
# whatever the moment, exit code 128 + the number and one line saying what was saved.
_STOP_SIGNALS = ('SIGINT', 'SIGTERM')
# What a stop now keeps: set by the command running (`_note_run`), read by `_interrupt`.
_STOP_NOTE = [lambda: 'nothing was saved']


def _note_run(run_dir: str) -> None:
  """A stop from now on says what `run_dir` keeps (its newest checkpoint)."""
  from nar.preflight import saved_checkpoint_note
  _STOP_NOTE[0] = lambda: saved_checkpoint_note(run_dir)


def _interrupt(signum, frame):
  """SIGINT or SIGTERM in `nar`, outside a training loop (which checkpoints and
  stops at the next step, `nar.train`): the process ends at once with one line
  saying what is kept. Every file `nar` writes is replaced atomically
  (`nar.storage`), so nothing saved is lost; an exception raised here instead
  could land inside an import, a garbage-collector callback or a finaliser,
  where Python drops it or a half-imported extension crashes the process."""
  del frame
  import signal
  try:
    note = _STOP_NOTE[0]()
  except Exception:  # pylint: disable=broad-except  (the line must come whatever happens)
    note = 'what was saved before is kept'
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except Exception:  # pylint: disable=broad-except
      pass
  os.write(2, f'nar: stopped by {signal.Signals(signum).name}; {note}\n'.encode())
  os._exit(128 + int(signum))


def _stopped(e: KeyboardInterrupt) -> int:
  """The one line and the exit code of a stop that reached `main` as an exception
  (`nar.errors.Stopped` from a training loop; a bare KeyboardInterrupt is a SIGINT
  where `nar` did not install its handler)."""
  import signal
  signum = getattr(e, 'signum', int(signal.SIGINT))
  name = getattr(e, 'name', 'SIGINT')
  saved = getattr(e, 'saved', '') or _STOP_NOTE[0]()
  print(f'nar: stopped by {name} {saved}' if saved.startswith('at step ')
        else f'nar: stopped by {name}; {saved}', file=sys.stderr)
  return 128 + signum


def main(argv: Optional[list[str]] = None) -> int:
  import signal
  import threading
  # Only where a signal has its default meaning (not in a background job that
  # ignores Ctrl-C, nor in a program that handles them itself).
  ours = []
  if threading.current_thread() is threading.main_thread():
    for name in _STOP_SIGNALS:
      sig = getattr(signal, name)
      if signal.getsignal(sig) in (signal.default_int_handler, signal.SIG_DFL):
        ours.append((sig, signal.signal(sig, _interrupt)))
  try:
    return _main(argv)
  except KeyboardInterrupt as e:
    return _stopped(e)
  finally:
    for sig, previous in ours:
      signal.signal(sig, previous)
    _STOP_NOTE[0] = lambda: 'nothing was saved'


def _main(argv: Optional[list[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.command == 'sweep':
    _STOP_NOTE[0] = lambda: ('each run keeps its newest checkpoint; run the same sweep again '
                             'to resume')
  from nar.storage import StorageError, cause
  try:
    return args.fn(args)
  except StorageError as e:
    print(f'nar: error: {_one_line(e)}', file=sys.stderr)
    return 2
  except KeyboardInterrupt as e:
    return _stopped(e)
  except Exception as e:  # pylint: disable=broad-except
    if isinstance(e, _user_errors()):
      print(f'nar: error: {_one_line(e)}', file=sys.stderr)
      return 2
    if isinstance(e, OSError):   # a file the commands read or write, e.g. a full or read-only disk
      where = f' {e.filename}' if e.filename else ''
      print(f'nar: error:{where} {cause(e)}', file=sys.stderr)
      return 2
    raise


def _one_line(e: BaseException) -> str:
  return ' '.join(str(e).split('\n'))


if __name__ == '__main__':
  sys.exit(main())
