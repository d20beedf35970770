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
  # -15: the signal came before training started (nothing new to save).
  assert proc.returncode in (0, 2, -signal.SIGTERM), err[-2000:]
  if proc.returncode == 2:
    assert 'stopped by SIGTERM' in err and 'checkpoint saved' in err
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
  assert ma == mb
