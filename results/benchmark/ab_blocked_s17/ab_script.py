"""A/B in one process: layers.WEIGHT_GRAD layouts, our training step (batch 32, n = 16, remat).
python ab_script.py ALGORITHM HIDDEN [REPEATS]; VARIANTS=native,blocked (comma-separated)."""
import os, sys, time
import jax
import nar.clrs_import  # noqa: F401
from nar import layers, methods
from nar import train as T
from nar.config import TrainConfig
from nar.sample import processed_spec

alg, hidden = sys.argv[1], int(sys.argv[2])
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
spec = processed_spec(alg)
config = TrainConfig(algorithm=alg, hidden=hidden, batch_size=32, train_sizes=(16,), remat='full').validate()
method = methods.get(config, spec)
batches = [method.batch(k) for k in range(2)]
net = T.build_network(config, spec, batches[0])
opt = T.make_optimizer(config)
key = jax.random.PRNGKey(0)
params = method.init(net, key, batches[0])
pl = T.Placement.create(32)
placed = [pl.batch(b) for b in batches]
if len({b.num_steps for b in batches}) > 1:
  placed = [placed[0]] * 2
progs = {}
for mode in os.environ.get('VARIANTS', 'native,blocked').split(','):
  layers.WEIGHT_GRAD = mode
  st = pl.replicate([params, opt.init(params)])
  up = T.make_update(method.loss_fn(net), opt, pl)
  out = up(st[0], st[1], key, placed[0]); jax.block_until_ready(out); st[0], st[1] = out[0], out[1]
  progs[mode] = (up, st)
  print(mode, 'loss', float(out[2]), flush=True)
for r in range(reps):
  for mode, (up, st) in progs.items():
    def go(b):
      o = up(st[0], st[1], key, b); st[0], st[1] = o[0], o[1]; jax.block_until_ready(o[2])
    for b in placed:
      go(b)
    t0 = time.perf_counter(); n = 4
    for i in range(n):
      go(placed[i % 2])
    dt = (time.perf_counter() - t0) / n
    print(f'{alg} h{hidden} {mode}: {1e3*dt:.1f} ms/step, {32/dt:.1f} samples/s', flush=True)
