"""FLOPs of a JAX function, counted from its jaxpr.

XLA's `cost_analysis` counts a `scan` (or `while`) body once, whatever its trip
count, so for a rollout of T steps it reports about 1/T of the work. This counter
walks the jaxpr instead and multiplies a scan body by its `length`:

- `dot_general`: 2 x (batch dims) x M x N x K (a multiply and an add per term);
- every other arithmetic primitive: one FLOP per output element (elementwise
  ops, reductions counted on their input);
- structural primitives (reshape, broadcast, slicing, gathers, ...): none;
- calls (`pjit`, `custom_jvp_call`, `custom_vjp_call`, `remat`, `cond`: the
  most expensive branch) are entered; a `while` loop, whose trip count is
  unknown, counts its body once and is reported in `while_loops`.

    count(fn, *args) -> FlopCount(total, matmul, while_loops)
"""

from __future__ import annotations

import dataclasses
import math

import jax

# Data movement and bookkeeping: no arithmetic.
_FREE = {
    'reshape', 'broadcast_in_dim', 'squeeze', 'expand_dims', 'transpose', 'slice',
    'dynamic_slice', 'dynamic_update_slice', 'gather', 'scatter', 'concatenate', 'pad',
    'convert_element_type', 'copy', 'copy_p', 'iota', 'select_n', 'rev', 'stop_gradient',
    'device_put', 'sharding_constraint', 'mesh_cast', 'reduce_precision', 'bitcast_convert_type',
    'argmax', 'argmin', 'sort', 'random_bits', 'random_seed', 'random_wrap', 'random_unwrap',
    'threefry2x32', 'split', 'clamp', 'eq', 'ne', 'lt', 'le', 'gt', 'ge', 'and', 'or', 'not',
    'xor', 'shift_left', 'shift_right_logical', 'shift_right_arithmetic', 'is_finite',
    'optimization_barrier', 'empty', 'squeeze_p',
}
_CALLS = ('jaxpr', 'call_jaxpr', 'fun_jaxpr')


@dataclasses.dataclass
class FlopCount:
  total: float = 0.0
  matmul: float = 0.0
  while_loops: int = 0

  def add(self, other: 'FlopCount', times: float = 1.0) -> None:
    self.total += times * other.total
    self.matmul += times * other.matmul
    self.while_loops += other.while_loops


def _size(aval) -> int:
  return int(math.prod(getattr(aval, 'shape', ()) or ()))


def _dot_flops(eqn) -> float:
  lhs, rhs = (v.aval for v in eqn.invars[:2])
  (lc, rc), (lb, _) = eqn.params['dimension_numbers']
  contract = math.prod(lhs.shape[d] for d in lc)
  batch = math.prod(lhs.shape[d] for d in lb)
  free_l = math.prod(s for d, s in enumerate(lhs.shape) if d not in lc and d not in lb)
  free_r = math.prod(s for d, s in enumerate(rhs.shape) if d not in rc and d not in (
      eqn.params['dimension_numbers'][1][1]))
  return 2.0 * batch * free_l * free_r * contract


def _inner(jaxpr):
  return getattr(jaxpr, 'jaxpr', jaxpr)


def count_jaxpr(jaxpr) -> FlopCount:
  out = FlopCount()
  for eqn in _inner(jaxpr).eqns:
    name = eqn.primitive.name
    if name == 'dot_general':
      f = _dot_flops(eqn)
      out.total += f
      out.matmul += f
    elif name == 'scan':
      out.add(count_jaxpr(eqn.params['jaxpr']), eqn.params['length'])
    elif name == 'while':
      out.add(count_jaxpr(eqn.params['body_jaxpr']))
      out.while_loops += 1
    elif name == 'cond':
      branches = [count_jaxpr(b) for b in eqn.params['branches']]
      out.add(max(branches, key=lambda c: c.total))
    elif any(k in eqn.params for k in _CALLS):
      sub = next(eqn.params[k] for k in _CALLS if k in eqn.params)
      out.add(count_jaxpr(sub))
    elif name in _FREE:
      continue
    elif name.startswith('reduce_') or name in ('cumsum', 'cummax', 'cumlogsumexp'):
      out.total += sum(_size(v.aval) for v in eqn.invars)
    else:
      out.total += sum(_size(v.aval) for v in eqn.outvars)
  return out


def count(fn, *args, **kwargs) -> FlopCount:
  """FLOPs of one call of `fn(*args, **kwargs)` (traced, not run)."""
  return count_jaxpr(jax.make_jaxpr(fn)(*args, **kwargs))
