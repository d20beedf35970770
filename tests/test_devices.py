"""Data parallelism: a step on 2 (and 4) devices equals the step on 1 device with the
same global batch; an indivisible batch is a clear error. Runs in a subprocess
because the host device count is fixed when JAX starts."""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent('''
    import jax, numpy as np
    import nar.clrs_import
    from nar import methods, train as T
    from nar.config import TrainConfig, ConfigError
    from nar.sample import processed_spec
    cfg = TrainConfig(algorithm='bfs', hidden=8, batch_size=4, train_sizes=(5,)).validate()
    spec = processed_spec('bfs')
    m = methods.get(cfg, spec)
    batch = m.batch(0)
    net = T.build_network(cfg, spec, batch)
    opt = T.make_optimizer(cfg)
    params = jax.device_get(m.init(net, jax.random.PRNGKey(0), batch))  # host copy: steps donate
    results = []
    for k in (1, NDEV):
      pl = T.Placement.create(cfg.batch_size, jax.devices()[:k])
      # Gradients are what XLA reduces across devices; Adam's first step divides
      # by |g|, so updated parameters would magnify round-off in near-zero grads.
      lossfn = m.loss_fn(net)
      grad = jax.jit(jax.value_and_grad(lambda p, b: lossfn(p, None, b)[0]))
      loss, g = grad(pl.replicate(params), pl.batch(batch))
      upd = T.make_update(lossfn, opt)
      upd(pl.replicate(params), pl.replicate(opt.init(params)), jax.random.PRNGKey(1),
          pl.batch(batch))  # the training step itself runs sharded
      results.append((float(loss), jax.device_get(g)))
    (l1, p1), (l2, p2) = results
    assert abs(l1 - l2) < 1e-5 * max(1, abs(l1)), (l1, l2)
    for a, b in zip(jax.tree_util.tree_leaves(p1), jax.tree_util.tree_leaves(p2)):
      np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)
    try:
      T.Placement.create(NDEV + 1 if (NDEV + 1) % NDEV else NDEV * 3 + 1)
      raise SystemExit('no error for an indivisible batch')
    except ConfigError as e:
      assert 'does not divide' in str(e)
    # End to end on all devices: trains, validates, tests.
    import tempfile
    from nar.train import train
    with tempfile.TemporaryDirectory() as d:
      res = train(TrainConfig(algorithm='bfs', hidden=8, batch_size=4, steps=2, eval_every=1,
                              train_sizes=(4,), val_samples=4, test_samples=4, test_size=6,
                              eval_batch_size=4, out=d + '/run', cache_dir=d + '/c').validate(),
                  progress=False)
      assert 0.0 <= res['test_score'] <= 1.0 and len(res['versions']['devices']) == NDEV
    print('OK', len(jax.devices()))
''')


@pytest.mark.parametrize('ndev', [2, 4])
def test_step_on_several_devices_equals_one_device(ndev):
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={ndev}',
             JAX_PLATFORMS='cpu')
  proc = subprocess.run([sys.executable, '-c', SCRIPT.replace('NDEV', str(ndev))],
                        capture_output=True, text=True, env=env, timeout=600,
                        cwd=os.path.dirname(os.path.dirname(__file__)))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'OK {ndev}' in proc.stdout
