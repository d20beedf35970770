"""Micro-benchmark: ways to compute a dense layer's weight gradient x^T @ g on XLA:CPU.
x, g: [rows, H]. Prints ms per call (median of rounds) for each formulation."""
import sys, time
import numpy as np
import jax, jax.numpy as jnp

rows, H = int(sys.argv[1]), int(sys.argv[2])
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 7
rng = np.random.default_rng(0)
x = jnp.asarray(rng.standard_normal((rows, H)), jnp.float32)
g = jnp.asarray(rng.standard_normal((rows, H)), jnp.float32)

def native(x, g):
  return jax.lax.dot_general(x, g, (((0,), (0,)), ((), ())))
def transposed(x, g):
  return jax.lax.optimization_barrier(x.T) @ g
def transposed_g(x, g):
  return (jax.lax.optimization_barrier(g.T) @ x).T
def batched(c):
  def f(x, g):
    xb, gb = x.reshape(c, -1, H), g.reshape(c, -1, H)
    return jnp.einsum('bki,bkj->bij', xb, gb).sum(0)
  return f
def chunked_t(c):
  def f(x, g):
    xt = jax.lax.optimization_barrier(x.reshape(c, -1, H).transpose(0, 2, 1))
    return jnp.einsum('bik,bkj->bij', xt, g.reshape(c, -1, H)).sum(0)
  return f
def split(c, transposed):
  def f(x, g):
    parts = []
    for xc, gc in zip(jnp.split(x, c), jnp.split(g, c)):
      parts.append((jax.lax.optimization_barrier(xc.T) @ gc) if transposed else native(xc, gc))
    return sum(parts)
  return f
def forward_like(x, g):      # reference: the forward's [rows, H] x [H, H]
  return x @ g[:H]

variants = {'native': native, 'transposed_x': transposed, 'transposed_g': transposed_g,
            'batched8': batched(8), 'split2': split(2, False), 'split2_t': split(2, True),
            'split4_t': split(4, True),
            'forward_matmul_same_flops': forward_like}
fns = {k: jax.jit(v) for k, v in variants.items()}
ref = np.asarray(fns['native'](x, g))
for k, f in fns.items():
  out = f(x, g).block_until_ready()
  if k != 'forward_matmul_same_flops':
    assert np.allclose(np.asarray(out), ref, rtol=1e-3, atol=1e-2), k
times = {k: [] for k in fns}
for _ in range(rounds):
  for k, f in fns.items():
    t0 = time.perf_counter()
    for _ in range(10):
      out = f(x, g)
    out.block_until_ready()
    times[k].append((time.perf_counter() - t0) / 10 * 1e3)
flops = 2 * rows * H * H
for k, t in times.items():
  m = float(np.median(t))
  print(f'rows={rows} H={H} {k:28s} {m:7.3f} ms  {flops / m / 1e6:6.1f} GFLOP/s  (min {min(t):.3f})')
