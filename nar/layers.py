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
    return x @ w
  return (x.reshape(-1, x.shape[-1]) @ w).reshape(x.shape[:-1] + (w.shape[-1],))


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
