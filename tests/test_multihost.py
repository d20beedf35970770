"""Several hosts, simulated by two processes on this machine (`jax.distributed`
over localhost, one CPU device each): the run trains, validates, tests and
resumes; its first loss equals a single process with two devices and the same
global batch; only process 0 writes the run directory."""

import json
import os
import socket
import subprocess
import sys

import pytest

from nar import distributed
from nar.config import ConfigError

ARGS = ['--algorithm', 'bfs', '--hidden', '8', '--batch-size', '4', '--eval-every', '1',
        '--test-size', '6',
        '--set', 'train_sizes=[4]', '--set', 'val_samples=4', '--set', 'test_samples=4',
        '--set', 'eval_batch_size=4', '--set', 'log_every=1']


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _env(tmp_path, devices: int = 1) -> dict:
  env = dict(os.environ, NAR_CACHE=str(tmp_path / 'cache'), NAR_COMPILE_CACHE='0')
  distributed.force_host_devices(env, devices)
  for k in distributed.ENV_VARIABLES:
    env.pop(k, None)
  return env


def _run_two_processes(tmp_path, out, steps: int, quiet: bool = True):
  port = _free_port()
  cmd = [sys.executable, '-m', 'nar.cli', 'train', *ARGS, '--steps', str(steps), '--out', out,
         '--coordinator', f'localhost:{port}', '--num-processes', '2'] + (['--quiet'] * quiet)
  procs = [subprocess.Popen(cmd + ['--process-id', str(i)], env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  outputs = [p.communicate(timeout=600)[0] for p in procs]
  for p, o in zip(procs, outputs):
    assert p.returncode == 0, o[-3000:]
  return outputs


def _metrics(out):
  with open(os.path.join(out, 'metrics.jsonl')) as f:
    return [json.loads(x) for x in f if x.strip()]


def test_two_processes_train_evaluate_and_resume(tmp_path):
  out = str(tmp_path / 'run')
  outputs = _run_two_processes(tmp_path, out, steps=2)
  assert all('OOD score' in o for o in outputs)
  rec = _metrics(out)
  # Written once (by process 0): one record per step, one validation per step, one test.
  assert [r['step'] for r in rec if r['kind'] == 'train'] == [1, 2]
  assert [r['step'] for r in rec if r['kind'] == 'val'] == [1, 2]
  assert len([r for r in rec if r['kind'] == 'test']) == 1
  with open(os.path.join(out, 'results.json')) as f:
    res = json.load(f)
  assert len(res['versions']['devices']) == 2 and 0.0 <= res['test_score'] <= 1.0

  # Same global batch on one process with two devices: the same first loss.
  single = str(tmp_path / 'single')
  p = subprocess.run([sys.executable, '-m', 'nar.cli', 'train', *ARGS, '--steps', '1',
                      '--out', single, '--quiet'], env=_env(tmp_path, devices=2), capture_output=True,
                     text=True, timeout=600)
  assert p.returncode == 0, p.stderr[-3000:]
  first = [r for r in _metrics(single) if r['kind'] == 'train'][0]
  assert first['loss'] == pytest.approx(rec[0]['loss'], rel=1e-5)

  # Resume with more steps: process 0 reads the checkpoint, both continue from it.
  outputs = _run_two_processes(tmp_path, out, steps=3, quiet=False)
  assert 'resuming from' in outputs[0] and 'step 2' in outputs[0]
  assert '[nar]' not in outputs[1]          # only process 0 reports
  steps = [r['step'] for r in _metrics(out) if r['kind'] == 'train']
  assert steps == [1, 2, 3]


def test_cluster_settings_from_flags_and_environment():
  assert not distributed.resolve().is_distributed
  spec = distributed.resolve('host:1234', 4, 3)
  assert (spec.coordinator, spec.num_processes, spec.process_id) == ('host:1234', 4, 3)
  env = {'JAX_COORDINATOR_ADDRESS': '10.0.0.1:99', 'JAX_NUM_PROCESSES': '2',
         'JAX_PROCESS_ID': '1'}
  spec = distributed.resolve(environ=env)
  assert (spec.coordinator, spec.num_processes, spec.process_id) == ('10.0.0.1:99', 2, 1)
  assert distributed.resolve(auto=True, environ={}).auto
  for bad, msg in [(('host:1', 2, None), 'needs all'), (('host:1', 2, 2), 'process id'),
                   (('nohost', 2, 0), 'HOST:PORT'), (('host:1', 0, 0), '>= 1')]:
    with pytest.raises(ConfigError, match=msg):
      distributed.resolve(*bad, environ={})
  with pytest.raises(ConfigError, match='integer'):
    distributed.resolve(environ={**env, 'JAX_PROCESS_ID': 'x'})
