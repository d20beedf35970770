"""Augmentation rules for geometry (segments_intersect, graham_scan, jarvis_march).

segments_intersect: no rule. The problem is two segments, exactly four points;
dm-clrs asserts `xs.shape == (4,)`, so a twin with more nodes cannot even be
executed, and an extra point would have no role in the problem.

graham_scan: the scan pushes points in increasing polar angle around the
lowest point `best`. New points that lie above `best` at a polar angle larger
than every original's are sorted last: `best`, every original's `atans` and the
processing order of the originals are unchanged, so the original trajectory is
a prefix of the twin's (t' = t); the new points are scanned afterwards. They are
drawn in the wedge between the original's last ray and the horizontal, inside
the sampler's disk. If that wedge is thinner than `_MIN_WEDGE` the rule falls
back to interior points (dm-clrs's scan can loop forever on collinear points).

jarvis_march: every hull step sweeps all points in array order, keeping the
most clockwise candidate as `endpoint`. New points appended at the END of the
array and strictly inside the hull are swept after the originals, when
`endpoint` already is the true next hull vertex; a strictly interior point is
never clockwise of a hull edge, so `endpoint` does not move. Each sweep gets k
extra steps on added nodes (only hint `i` moves), then continues as the
original: state alignment recovers every step for every hint but `i` on the
transition that closes a sweep (the original goes from `i` = n-1 to `i` = 0,
the twin from `i` = n+k-1).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import numpy as np

from augment.rule import RuleEntry, TwinArgs, num_to_add, register
from nar.sample import Sample

# dm-clrs ConvexHullSampler default: points uniform in the disk of radius 2.
_DISK_RADIUS = 2.0
# Narrowest wedge (radians) beyond the originals' largest polar angle in which
# graham_scan's new points are placed.
_MIN_WEDGE = 1e-3



def _lowest(xs: np.ndarray, ys: np.ndarray) -> int:
  # Same tie-break as dm-clrs: lowest y, then lowest x, first index.
  best = 0
  for i in range(xs.shape[0]):
    if ys[i] < ys[best] or (ys[i] == ys[best] and xs[i] < xs[best]):
      best = i
  return best


def graham_append_last_angle(sample: Sample, rng: np.random.Generator, *,
                             max_added: Optional[int] = None) -> TwinArgs:
  """Appends points at polar angles (around `best`) beyond all originals'."""
  xs, ys = (np.asarray(a, dtype=np.float64) for a in sample.args)
  n = xs.shape[0]
  k = num_to_add(n, rng, max_added)
  best = _lowest(xs, ys)
  others = np.arange(n) != best
  angle_max = float(np.max(np.arctan2(ys[others] - ys[best], xs[others] - xs[best])))
  if math.pi - angle_max < _MIN_WEDGE:
    # Too thin a wedge: new points would be nearly collinear with `best` and
    # the last original, and dm-clrs's scan can loop forever on collinear
    # points. Interior points are scanned among the originals instead (fewer
    # valid steps, all found by state alignment).
    new_x, new_y = _interior_points(xs, ys, k, rng)
    return TwinArgs(args=(np.concatenate([xs, new_x]), np.concatenate([ys, new_y])),
                    node_map=np.arange(n))
  # The sampler's disk (centre 0, radius 2), widened if the points come from
  # elsewhere: `best` must lie strictly inside, else a ray leaving the disk at
  # once would put a new point ON `best`, and dm-clrs's scan never terminates
  # on duplicate points (it pops down to `best` and keeps popping).
  extent = float(np.max(np.hypot(xs, ys)))
  radius = _DISK_RADIUS if extent < _DISK_RADIUS else 1.05 * extent
  bx, by = xs[best], ys[best]
  # Distinct angles in the open wedge (angle_max, pi): above `best`, sorted
  # after every original, no ties among new points.
  thetas = angle_max + (math.pi - angle_max) * np.sort(rng.uniform(0.05, 0.95, size=k))
  ux, uy = np.cos(thetas), np.sin(thetas)
  # Distance along each ray to the disk's boundary (`best` is inside the disk).
  b_dot_u = bx * ux + by * uy
  reach = -b_dot_u + np.sqrt(np.maximum(b_dot_u ** 2 - (bx ** 2 + by ** 2 - radius ** 2), 0.0))
  dist = reach * rng.uniform(0.1, 0.9, size=k)
  new_x = bx + dist * ux
  new_y = by + dist * uy
  return TwinArgs(args=(np.concatenate([xs, new_x]), np.concatenate([ys, new_y])),
                  node_map=np.arange(n))


def _interior_points(xs: np.ndarray, ys: np.ndarray, k: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """k points strictly inside the hull of (xs, ys)."""
  n = xs.shape[0]
  if n < 3:
    raise ValueError(f'need at least 3 points for an interior point, got {n}')
  new_x, new_y = np.empty(k), np.empty(k)
  for m in range(k):
    # In the triangle of three random originals, away from its edges: that
    # open triangle lies in the hull's interior (the sampler rejects collinear
    # triples, so the triangle is not degenerate).
    a, b, c = rng.choice(n, size=3, replace=False)
    w = rng.dirichlet((2.0, 2.0, 2.0))
    new_x[m] = w[0] * xs[a] + w[1] * xs[b] + w[2] * xs[c]
    new_y[m] = w[0] * ys[a] + w[1] * ys[b] + w[2] * ys[c]
  return new_x, new_y


def jarvis_append_interior(sample: Sample, rng: np.random.Generator, *,
                           max_added: Optional[int] = None) -> TwinArgs:
  """Appends points strictly inside the hull at the end of the array."""
  xs, ys = (np.asarray(a, dtype=np.float64) for a in sample.args)
  n = xs.shape[0]
  new_x, new_y = _interior_points(xs, ys, num_to_add(n, rng, max_added), rng)
  return TwinArgs(args=(np.concatenate([xs, new_x]), np.concatenate([ys, new_y])),
                  node_map=np.arange(n))


def xy_args_from_inputs(inputs: Mapping[str, np.ndarray]) -> tuple[Any, ...]:
  return (np.asarray(inputs['x'], dtype=np.float64).copy(),
          np.asarray(inputs['y'], dtype=np.float64).copy())


register(RuleEntry(
    'segments_intersect', None, xy_args_from_inputs,
    'no rule',
    'a fixed-size problem: exactly two segments (four points); dm-clrs asserts '
    'xs.shape == (4,), so a larger twin cannot be executed and an added point '
    'would have no meaning in the problem'))
register(RuleEntry(
    'graham_scan', graham_append_last_angle, xy_args_from_inputs,
    'appends 1..max(2, n//4) points inside the disk at polar angles (around the '
    'lowest point) beyond every original\'s, so they are scanned last',
    'the originals are scanned first and identically: every step is valid at '
    't\' = t'))
register(RuleEntry(
    'jarvis_march', jarvis_append_interior, xy_args_from_inputs,
    'appends 1..max(2, n//4) points strictly inside the hull at the end of the array',
    'each sweep gets k extra steps on the added points; the step that closes a '
    'sweep (i = n-1 -> 0) has no twin match for hint `i` (all other hints match '
    'by state alignment)'))
