"""Parameter holders with Haiku's names and initialisers, usable outside Haiku.

The reasoner fetches every weight once (outside its time loop) and runs the
loop as a pure `jax.lax.scan`. These modules create parameters exactly as
`hk.Linear` / `hk.LayerNorm` / `hk.nets.MLP` would (same names, shapes and
initialisers), so a parameter tree of dm-clrs's `BaselineModel` loads as is.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np


class Affine(NamedTuple):
  """y = x @ w + b, with w `[in, out]` and b `[out]`."""
  w: jax.Array
  b: jax.Array

  def __call__(self, x: jax.Array) -> jax.Array:
    return matmul(x, self.w) + self.b


def matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """x `[..., K]` @ w `[K, M]` as one 2-D dot: XLA:CPU runs the backward pass of a
  flattened dot about 1.5x faster than that of a dot with batch dimensions."""
  if x.ndim <= 2:
    return _dot(x, w)
  return _dot(x.reshape(-1, x.shape[-1]), w).reshape(x.shape[:-1] + (w.shape[-1],))


# How the weight gradient `x^T @ g` of a large 2-D dot is computed. 'native'
# leaves it to XLA: a dot contracting the rows of both operands, which XLA:CPU runs
# on its generic (Eigen) kernel. 'transposed' writes x^T out first, so the dot
# has the standard layout XLA:CPU gives its YNNPACK kernels. 'auto': transposed
# on a CPU where both widths are at most 64 (on this project's 2-core CPU, 3-10%
# faster training steps at hidden 64, slower at 128: docs/speed.md), else native.
WEIGHT_GRAD = 'auto'
TRANSPOSED_GRAD_MIN_ROWS = 2048
TRANSPOSED_GRAD_MAX_WIDTH = 64
# Narrow outputs (a pointer decoder's last layer has one column) keep the native
# dot: the transposed layout was measured only on the MLPs' dots of width 64 and 128.
TRANSPOSED_GRAD_MIN_OUT_WIDTH = 16


def _transposed_weight_grad(x: jax.Array, w: jax.Array) -> bool:
  if (WEIGHT_GRAD == 'native' or x.shape[0] < TRANSPOSED_GRAD_MIN_ROWS
      or w.shape[1] < TRANSPOSED_GRAD_MIN_OUT_WIDTH):
    return False
  if WEIGHT_GRAD == 'transposed':
    return True
  return (jax.default_backend() == 'cpu' and
          max(w.shape) <= TRANSPOSED_GRAD_MAX_WIDTH)


def _dot(x: jax.Array, w: jax.Array) -> jax.Array:
  if _transposed_weight_grad(x, w):
    return _dot_transposed_grad(x, w)
  return x @ w


@jax.custom_vjp
def _dot_transposed_grad(x: jax.Array, w: jax.Array) -> jax.Array:
  return x @ w


def _dot_fwd(x, w):
  return x @ w, (x, w)


def _dot_bwd(residuals, g):
  x, w = residuals
  # The barrier keeps XLA from folding the transpose back into the dot.
  x_t = jax.lax.optimization_barrier(x.T)
  return (g @ w.T).astype(x.dtype), (x_t @ g).astype(w.dtype)


_dot_transposed_grad.defvjp(_dot_fwd, _dot_bwd)


class Dense(hk.Module):
  """`hk.Linear`'s parameters (w: TruncatedNormal(1/sqrt(fan_in)), b: zeros)."""

  def __init__(self, output_size: int, w_init: Optional[hk.initializers.Initializer] = None,
               b_init: Optional[hk.initializers.Initializer] = None,
               name: Optional[str] = None):
    # Named like hk.Linear ('linear', 'linear_1', ...: Haiku numbers repeats).
    super().__init__(name=name or 'linear')
    self.output_size = output_size
    self.w_init = w_init
    self.b_init = b_init

  def params(self, input_size: int) -> Affine:
    w_init = self.w_init or hk.initializers.TruncatedNormal(stddev=1.0 / np.sqrt(input_size))
    w = hk.get_parameter('w', [input_size, self.output_size], jnp.float32, init=w_init)
    b = hk.get_parameter('b', [self.output_size], jnp.float32, init=self.b_init or jnp.zeros)
    return Affine(w, b)


class LayerNormParams(NamedTuple):
  scale: jax.Array
  offset: jax.Array

  def __call__(self, x: jax.Array, eps: float = 1e-5) -> jax.Array:
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.var(x, axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * self.scale + self.offset


class LayerNorm(hk.Module):
  """`hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)`'s parameters."""

  def __init__(self, name: str = 'layer_norm'):
    super().__init__(name=name)

  def params(self, size: int) -> LayerNormParams:
    scale = hk.get_parameter('scale', [size], jnp.float32, init=jnp.ones)
    offset = hk.get_parameter('offset', [size], jnp.float32, init=jnp.zeros)
    return LayerNormParams(scale, offset)


class MLP(hk.Module):
  """`hk.nets.MLP(sizes)`'s parameters (layers created in __init__, as Haiku does,
  hence the `mlp/~/linear_k` names)."""

  def __init__(self, sizes: list[int], name: str = 'mlp'):
    super().__init__(name=name)
    self.layers = [Dense(s, name=f'linear_{k}') for k, s in enumerate(sizes)]

  def params(self, input_size: int) -> list[Affine]:
    out = []
    for layer in self.layers:
      out.append(layer.params(input_size))
      input_size = layer.output_size
    return out


def mlp_apply(layers: list[Affine], x: jax.Array) -> jax.Array:
  """hk.nets.MLP forward: ReLU between layers, none after the last."""
  for k, layer in enumerate(layers):
    x = layer(x)
    if k < len(layers) - 1:
      x = jax.nn.relu(x)
  return x
