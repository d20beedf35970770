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
    # End to end on all devices (checked once, on 2): trains, validates, tests.
    if NDEV == 2:
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


def _run_on_devices(script: str, ndev: int) -> None:
  """`script` (NDEV replaced) in a fresh Python with `ndev` host devices; it prints 'OK ndev'."""
  from nar.distributed import force_host_devices
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  force_host_devices(env, ndev)
  proc = subprocess.run([sys.executable, '-c', script.replace('NDEV', str(ndev))],
                        capture_output=True, text=True, env=env, timeout=900,
                        cwd=os.path.dirname(os.path.dirname(__file__)))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'OK {ndev}' in proc.stdout


@pytest.mark.parametrize('ndev', [2, 4])
def test_step_on_several_devices_equals_one_device(ndev):
  _run_on_devices(SCRIPT, ndev)


MULTI_TASK_SCRIPT = textwrap.dedent('''
    import jax, numpy as np, optax
    import nar.clrs_import
    from nar import train as T
    from nar.config import TrainConfig
    cfg = TrainConfig(algorithm='insertion_sort,bfs', method='hint_relic', hidden=8,
                      batch_size=4, train_sizes=(5,), relic_critic_hidden=8,
                      relic_pairs=1).validate()
    model = T.build_run_model(cfg)
    # Plain SGD with rate 1: the updated parameters are params - gradient (Adam's
    # first step would magnify round-off in near-zero gradients).
    opt = optax.sgd(1.0)
    params = jax.device_get(model.init_params(jax.random.PRNGKey(0)))
    rng = jax.random.PRNGKey(3)
    for i, (task, net) in enumerate(zip(model.tasks, model.nets)):
      item = task.batch(0)
      results = []
      for k in (1, NDEV):
        pl = T.Placement.create(cfg.batch_size, jax.devices()[:k])
        upd = T.make_update(task.loss_fn(net), opt, pl, algorithm_index=i)
        new, _, loss, _, _ = upd(pl.replicate(params), pl.replicate(opt.init(params)), rng,
                                 *task.place(item, pl))
        new = jax.device_get(new)
        # The other algorithm's encoders and decoders stay put on every placement.
        for m in T.other_algorithms_modules(params, i):
          for w in params[m]:
            np.testing.assert_array_equal(new[m][w], params[m][w], err_msg=m)
        results.append((float(loss), new))
      (l1, p1), (l2, p2) = results
      assert abs(l1 - l2) < 1e-5 * max(1, abs(l1)), (i, l1, l2)
      moved = 0
      for m in p1:
        for w in p1[m]:
          np.testing.assert_allclose(p1[m][w], p2[m][w], atol=1e-5, rtol=1e-4, err_msg=m)
          moved += not np.array_equal(p1[m][w], params[m][w])
      assert moved, i
    print('OK', len(jax.devices()))
''')


def test_multi_task_hint_relic_step_on_two_devices_equals_one_device():
  """Each algorithm's training step in a multi-task Hint-ReLIC run (twins,
  critics, the other algorithm's modules frozen) gives the same loss and the
  same update sharded over 2 devices as on 1."""
  _run_on_devices(MULTI_TASK_SCRIPT, 2)
