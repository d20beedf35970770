"""A training process killed with SIGKILL (or stopped by SIGTERM) and started again ends
exactly like an uninterrupted run."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from nar import checkpoint
from tests.helpers import without_timings

ARGS = ['train', '-a', 'bfs', '--steps', '8', '--hidden', '8', '--batch-size', '4',
        '--eval-every', '2', '--seed', '5', '--test-size', '8', '--quiet',
        '--set', 'train_sizes=[4,5]', '--set', 'val_samples=8', '--set', 'test_samples=8',
        '--set', 'eval_batch_size=4', '--set', 'log_every=1']


# Multi-task: algorithms interleaved one per step, each with its own stream and step;
# one training and one evaluation shape per algorithm (compilation is most of its time).
MULTI_TASK_ARGS = ['train', '-a', 'insertion_sort,bfs', '--steps', '8', '--hidden', '8',
                   '--batch-size', '4', '--eval-every', '2', '--seed', '5', '--test-size', '8',
                   '--quiet', '--set', 'train_sizes=[4]', '--set', 'val_size=8',
                   '--set', 'val_samples=8', '--set', 'test_samples=8',
                   '--set', 'eval_batch_size=8', '--set', 'log_every=1']


def _cmd(out, cache, args):
  return [sys.executable, '-m', 'nar.cli', *args, '--out', str(out), '--set', f'cache_dir="{cache}"']


def _params(out):
  (_, path), *_ = checkpoint.step_dirs(os.path.join(out, 'checkpoints'))
  with np.load(os.path.join(path, checkpoint.STATE)) as z:
    return {k: z[k] for k in z.files}


def _wait_for_checkpoint(proc, out, timeout=300):
  t0 = time.time()
  while time.time() - t0 < timeout and proc.poll() is None:
    if checkpoint.step_dirs(os.path.join(out, 'checkpoints')):
      return True
    time.sleep(0.2)
  return False


@pytest.mark.parametrize('args', [ARGS, MULTI_TASK_ARGS], ids=['single_task', 'multi_task'])
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, args):
  cache = tmp_path / 'cache'
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  subprocess.run(_cmd(tmp_path / 'full', cache, args), check=True, env=env, capture_output=True)
  # Killed at a random moment after its first checkpoint.
  proc = subprocess.Popen(_cmd(tmp_path / 'killed', cache, args), env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  assert _wait_for_checkpoint(proc, tmp_path / 'killed')
  time.sleep(random.uniform(0.0, 1.0))
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  # SIGTERM during the resumed run saves a checkpoint and exits with a message.
  proc = subprocess.Popen(_cmd(tmp_path / 'killed', cache, args), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  time.sleep(random.uniform(0.0, 2.0))
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate()
  # 143 whatever the moment (docs/troubleshooting.md), with a line saying what was saved.
  assert proc.returncode in (0, 128 + signal.SIGTERM), err[-2000:]
  if proc.returncode:
    last = err.strip().splitlines()[-1]
    assert last.startswith('nar: stopped by SIGTERM') and 'Traceback' not in err, err[-2000:]
    assert any(s in last for s in ('checkpoint saved at', 'is kept', 'no checkpoint was saved',
                                   'nothing was saved')), last
  subprocess.run(_cmd(tmp_path / 'killed', cache, args), check=True, env=env, capture_output=True)
  a, b = _params(tmp_path / 'full'), _params(tmp_path / 'killed')
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  ra = json.load(open(tmp_path / 'full' / 'results.json'))
  rb = json.load(open(tmp_path / 'killed' / 'results.json'))
  assert ra['test'] == rb['test'] and ra['best_val'] == rb['best_val']
  assert ra.get('per_algorithm') == rb.get('per_algorithm')
  ma = [json.loads(x) for x in open(tmp_path / 'full' / 'metrics.jsonl')]
  mb = [json.loads(x) for x in open(tmp_path / 'killed' / 'metrics.jsonl')]
  assert without_timings(ma) == without_timings(mb)


@pytest.mark.parametrize('name, moment', [('SIGINT', 'start-up'), ('SIGTERM', 'start-up'),
                                          ('SIGTERM', 'before the steps'),
                                          ('SIGINT', 'training')])
def test_a_stop_signal_at_any_moment_exits_128_plus_its_number_saying_what_was_saved(
    tmp_path, name, moment):
  """One rule: SIGINT 130, SIGTERM 143, one last line `nar: stopped by ...` that says
  what was saved, never a traceback nor a silent death by the signal."""
  sig = getattr(signal, name)
  out = tmp_path / 'run'
  args = list(ARGS)
  args[args.index('--steps') + 1] = '400'          # still training when the signal comes
  proc = subprocess.Popen(_cmd(out, tmp_path / 'cache', args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=dict(os.environ))
  if moment == 'start-up':
    time.sleep(0.5)            # importing the command line, JAX, dm-clrs
  elif moment == 'before the steps':
    t0 = time.time()
    while not (out / 'config.json').exists() and proc.poll() is None and time.time() - t0 < 300:
      time.sleep(0.05)
  else:
    assert _wait_for_checkpoint(proc, out)
  proc.send_signal(sig)
  stdout, err = proc.communicate(timeout=600)
  assert proc.returncode == 128 + sig, (proc.returncode, err[-2000:])
  assert 'Traceback' not in err and stdout == '', err[-2000:]
  last = err.strip().splitlines()[-1]
  assert last.startswith(f'nar: stopped by {name}'), last
  if moment == 'training':
    assert 'checkpoint saved at' in last and 'run the same command again to resume' in last
  elif moment == 'before the steps':
    assert any(s in last for s in ('no checkpoint was saved yet', 'checkpoint saved at')), last
  else:
    assert 'nothing was saved' in last or 'no checkpoint was saved yet' in last, last
