"""Where one training step's time goes, op by op: a `jax.profiler` trace of a few
steps of our baseline, read back with `jax.profiler.ProfileData`.

    python -m experiments.profile_step --algorithm bfs --hidden 128 [--steps 4]

Prints the compiled step's ops (XLA:CPU thunk events; on accelerators, the
device's op events) summed over threads, largest first, each with its phase read
from the HLO metadata (`fwd`, `bwd`, `recompute` for the forward a `remat`
backward runs again), and a summary by phase and kind (`matmul` for dot fusions,
`loop` for elementwise and reduction fusions). Times are thread time: with two
worker threads an op that runs on both counts twice; shares are what to read.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import tempfile
import time
from typing import Optional

# Thread-level bookkeeping, and control flow whose events contain their body's ops.
_NOT_OPS = ('ThunkExecutor::Execute', 'SlinkyThreadPool::Await')
_CONTAINERS = re.compile(r'^(end: |(cond|conditional|while|call)(\.\d+)?$)')


def _phase(hlo_line: str) -> str:
  if 'rematted_computation' in hlo_line:
    return 'recompute'
  if 'transpose(' in hlo_line:
    return 'bwd'
  if 'jvp(' in hlo_line:
    return 'fwd'
  return 'other'


def _kind(name: str, hlo_line: str) -> str:
  if name.startswith(('ynn_fusion', 'dot', 'onednn', 'xnn')) or ' dot(' in hlo_line or \
      '__ynn_fusion' in hlo_line:
    return 'matmul'
  if 'copy' in name or 'transpose' in name:
    return 'copy'
  return 'loop'


def profile(algorithm: str, *, hidden: int, batch_size: int, size: int, steps: int,
            remat: str = 'full', length_groups: int = 0, trace_dir: Optional[str] = None) -> dict:
  """Traces `steps` training steps (after compilation and one warm-up step).

  Returns {'step_s': wall seconds a step, 'ops': [(name, seconds a step, calls a
  step, phase, kind)] largest first, 'total_s': op seconds a step (all threads)}."""
  import jax
  from nar import methods
  from nar import run_model as T
  from nar.config import TrainConfig
  from nar.sample import processed_spec

  if not hasattr(jax.profiler, 'ProfileData'):
    raise RuntimeError(f'reading a trace back needs jax.profiler.ProfileData, which JAX '
                       f'{jax.__version__} lacks: upgrade JAX')
  spec = processed_spec(algorithm)
  config = TrainConfig(algorithm=algorithm, hidden=hidden, batch_size=batch_size,
                       train_sizes=(size,), remat=remat, length_groups=length_groups).validate()
  method = methods.get(config, spec)
  batches = [method.batch(k) for k in range(2)]
  net = T.build_network(config, spec, batches[0])
  optimizer = T.make_optimizer(config)
  key = jax.random.PRNGKey(0)
  params = method.init(net, key, batches[0])
  placement = T.Placement.create(batch_size)
  state = placement.replicate([params, optimizer.init(params)])
  update = T.make_update(method.loss_fn(net), optimizer, placement)
  placed = [placement.batch(b) for b in batches]
  shapes = {b.num_steps for b in batches}
  if len(shapes) > 1:    # one compiled program: pad both to the longer
    placed = [placed[0]] * 2

  def step(b):
    state[0], state[1], loss, _, _ = update(state[0], state[1], key, b)
    return float(loss)
  for b in placed:
    step(b)
  t0 = time.perf_counter()
  for i in range(steps):
    step(placed[i % 2])
  step_s = (time.perf_counter() - t0) / steps
  trace_dir = trace_dir or tempfile.mkdtemp(prefix='nar_profile_')
  with jax.profiler.trace(trace_dir):
    for i in range(steps):
      step(placed[i % 2])
  files = glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'), recursive=True)
  if not files:
    raise RuntimeError(f'jax.profiler wrote no trace under {trace_dir}')
  data = jax.profiler.ProfileData.from_file(max(files, key=os.path.getmtime))
  hlo = update.lower(state[0], state[1], key, placed[0]).compile().as_text()
  durations, calls = collections.Counter(), collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      if line.name in ('python',) or 'XLAPjRtCpuClient' in line.name:
        continue            # the host's Python and the wait for completion, not ops
      for event in line.events:
        if event.name in _NOT_OPS or _CONTAINERS.match(event.name):
          continue
        durations[event.name] += event.duration_ns
        calls[event.name] += 1
  ops = []
  for name, ns in durations.most_common():
    m = re.search(r'\n\s*%?' + re.escape(name) + r' = ([^\n]*)', hlo)
    line = m.group(1) if m else ''
    ops.append((name, ns / 1e9 / steps, calls[name] / steps, _phase(line), _kind(name, line)))
  return {'algorithm': algorithm, 'hidden': hidden, 'batch': batch_size, 'n': size,
          'T': batches[0].num_steps, 'step_s': step_s, 'ops': ops,
          'total_s': sum(o[1] for o in ops)}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--algorithm', default='bfs')
  p.add_argument('--hidden', type=int, default=128)
  p.add_argument('--batch-size', type=int, default=32)
  p.add_argument('--size', type=int, default=16)
  p.add_argument('--steps', type=int, default=4, help='steps traced')
  p.add_argument('--remat', default='full', choices=['full', 'none'])
  p.add_argument('--length-groups', type=int, default=0, help='0: the training default')
  p.add_argument('--top', type=int, default=25, help='ops listed')
  p.add_argument('--trace-dir', default=None, help='keep the trace here (TensorBoard/XProf)')
  args = p.parse_args(argv)
  import nar.clrs_import  # noqa: F401
  r = profile(args.algorithm, hidden=args.hidden, batch_size=args.batch_size, size=args.size,
              steps=args.steps, remat=args.remat, length_groups=args.length_groups,
              trace_dir=args.trace_dir)
  total = r['total_s'] or float('nan')
  print(f"{r['algorithm']}: hidden {r['hidden']}, batch {r['batch']}, n {r['n']}, T {r['T']}: "
        f"{1e3 * r['step_s']:.1f} ms a step (wall), {1e3 * r['total_s']:.1f} ms of op time "
        f"(all threads)")
  by = collections.Counter()
  for _, s, _, phase, kind in r['ops']:
    by[(phase, kind)] += s
  print('\n| phase | kind | ms a step | share |\n|---|---|---|---|')
  for (phase, kind), s in by.most_common():
    print(f'| {phase} | {kind} | {1e3 * s:.1f} | {100 * s / total:.1f}% |')
  print('\n| op | phase | kind | calls a step | ms a step | share |\n|---|---|---|---|---|---|')
  for name, s, c, phase, kind in r['ops'][:args.top]:
    print(f'| {name} | {phase} | {kind} | {c:g} | {1e3 * s:.2f} | {100 * s / total:.1f}% |')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
