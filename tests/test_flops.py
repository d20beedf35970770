"""The jaxpr FLOP counter the roofline uses: a scan body counts `length` times
(XLA's cost analysis counts it once), dot_general 2 x M x N x K per batch."""

import jax
import jax.numpy as jnp

from experiments.flops import count


def test_scan_bodies_count_once_per_iteration_and_dots_are_2mnk():
  def rollout(x, w):
    def body(c, _):
      return jnp.tanh(c @ w), None
    c, _ = jax.lax.scan(body, x, None, length=7)
    return c.sum()
  x, w = jnp.ones((4, 8)), jnp.ones((8, 8))
  one = count(lambda x, w: jnp.tanh(x @ w).sum(), x, w)
  seven = count(rollout, x, w)
  assert one.matmul == 2 * 4 * 8 * 8
  assert seven.matmul == 7 * one.matmul
  assert seven.total == 7 * (2 * 4 * 8 * 8 + 4 * 8) + 4 * 8       # + tanh each step, one sum
  batched = count(lambda a, b: jnp.einsum('bij,bjk->bik', a, b), jnp.ones((3, 4, 5)),
                  jnp.ones((3, 5, 6)))
  assert batched.matmul == 2 * 3 * 4 * 6 * 5
  # Through jit and grad: the backward of a matmul is two matmuls of the same size.
  grad = count(jax.grad(lambda w: jax.jit(lambda w: (x @ w).sum())(w)), w)
  assert grad.matmul == 2 * (2 * 4 * 8 * 8)
  assert count(lambda x: x.reshape(-1).T, x).total == 0
