"""Where a run's compile time goes: every XLA program `nar train` compiles, with
the shape it was compiled for, its compile seconds and whether the persistent
compilation cache served it.

    python -m experiments.compile_profile --algorithm bfs --steps 300 --hidden 64 --eval-every 100

Takes `nar train`'s arguments, trains in this process with JAX's compile log on
(`nar.compilation.CompileLog`, and JAX's own messages for the shapes), then
prints one row per program of at least --min-seconds (the rest summed) and the
run's timings. Counts do not depend on the machine's load; seconds do.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import threading
import time
from typing import Optional

_SHAPE = re.compile(r'\[([0-9,]*)\]')


class _ShapeLog(logging.Handler):
  """JAX's 'Compiling <name> with global shapes and types ...' messages (with
  `jax_log_compiles`), per thread, in order: the shapes of each program."""

  def __init__(self):
    super().__init__(logging.WARNING)
    self.by_thread: dict = {}
    self._lock = threading.Lock()

  def emit(self, record):
    text = record.getMessage()
    if text.startswith('Compiling '):
      with self._lock:
        self.by_thread.setdefault(threading.get_ident(), []).append(text)


def batch_shape(message: str, batch_size: int) -> Optional[tuple]:
  """(nodes, steps) of the `Batch` among a program's arguments: nodes from the
  node mask `[B, N]` (its last argument), steps from the hints `[T, B, ...]`."""
  shapes = [tuple(int(d) for d in m.split(',') if d) for m in _SHAPE.findall(message)]
  masks = [s for s in shapes if len(s) == 2 and s[0] == batch_size]
  hints = [s[0] for s in shapes if len(s) >= 2 and s[1] == batch_size and s[0] != batch_size]
  if not masks:
    return None
  return masks[-1][1], (max(hints) if hints else None)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--min-seconds', type=float, default=1.0,
                 help='programs compiled faster than this are summed in one row')
  p.add_argument('--json', default=None, help='also write the rows and timings here')
  args, train_argv = p.parse_known_args(argv)
  t_start = time.perf_counter()
  from nar import arguments
  parser = argparse.ArgumentParser(prog='compile_profile train flags')
  arguments.add_train_args(parser)
  config = arguments.config_from_args(parser.parse_args(train_argv))
  import jax
  from nar.compilation import CompileLog
  from nar.train import train
  jax.config.update('jax_log_compiles', True)
  shapes = _ShapeLog()
  pxla = logging.getLogger('jax._src.interpreters.pxla')
  pxla.addHandler(shapes)
  # JAX's own messages go to our handler only, not to the terminal.
  for name in ('jax._src.interpreters.pxla', 'jax._src.dispatch', 'jax._src.compiler',
               'jax._src.cache_key', 'jax._src.compilation_cache'):
    logging.getLogger(name).propagate = False
  log = CompileLog().start()
  try:
    results = train(config, progress=False)
  finally:
    log.stop()
  wall = time.perf_counter() - t_start
  # Each compilation with the first unused message of its name (JAX logs the
  # shapes as it starts compiling, the log records the program when it is done).
  rows = []
  messages = [m for v in shapes.by_thread.values() for m in v]
  for c in log.programs():
    name = c.name
    found = next((m for m in messages if m.startswith(f'Compiling {name} ')), None)
    if found is not None:
      messages.remove(found)
    rows.append({'program': name, 'started_s': round(c.started, 2),
                 'seconds': round(c.seconds, 2), 'source': c.source,
                 'batch_shape': batch_shape(found, config.batch_size) if found else None})
  big = [r for r in rows if r['seconds'] >= args.min_seconds or r['source'] == 'cache']
  small = [r for r in rows if r not in big]
  print('| # | program | batch shape (nodes, steps) | started (s into training) | '
        'compile s | source |')
  print('|---|---|---|---|---|---|')
  for i, r in enumerate(big, 1):
    shape = r['batch_shape']
    print(f"| {i} | {r['program']} | {shape if shape else ''} | {r['started_s']:.1f} | "
          f"{r['seconds']:.1f} | {r['source']} |")
  if small:
    print(f"| | {len(small)} programs under {args.min_seconds:g} s | | | "
          f"{sum(r['seconds'] for r in small):.1f} | |")
  summary = log.summary()
  timings = results.get('timings', {})
  print()
  print(f"XLA programs: {summary['programs']} ({summary['from_cache']} from the persistent "
        f"cache, {summary['written']} written to it); backend compile {summary['compile_s']:.1f} s "
        f"summed over threads; tracing {summary['trace_s']:.1f} s, lowering "
        f"{summary['lower_s']:.1f} s")
  print('run timings: ' + ', '.join(f'{k} {v:.1f}' if isinstance(v, float) else f'{k} {v}'
                                    for k, v in timings.items()))
  print(f'wall, this command: {wall:.1f} s')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump({'rows': rows, 'summary': summary, 'timings': timings, 'wall_s': wall,
                 'argv': sys.argv}, f, indent=1)
  return 0


if __name__ == '__main__':
  sys.exit(main())
