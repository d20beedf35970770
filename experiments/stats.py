"""Paired statistics of the report: the 95% t-interval, the paired t-test of two
columns over their shared seeds (`PairedTest`, `paired_test`), Holm's adjustment
over a family of tests (`holm`), and a test's report cell (`format_test`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional


def _mean_std(xs):
  m = sum(xs) / len(xs)
  sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
  return m, sd


# Two-sided 95% quantiles of Student's t, by degrees of freedom (1-30); beyond, the normal's.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t_interval(xs) -> Optional[tuple]:
  """The 95% t-interval of the mean of `xs` (None with fewer than 2 values)."""
  if len(xs) < 2:
    return None
  mu, sd = _mean_std(xs)
  t = _T975[len(xs) - 2] if len(xs) - 1 <= len(_T975) else 1.960
  half = t * sd / math.sqrt(len(xs))
  return mu - half, mu + half


@dataclasses.dataclass
class PairedTest:
  """A paired comparison of two columns over the seeds both have.

  Attributes:
    diffs: the per-seed differences (mine - reference), in points.
    ci: their mean's 95% t-interval (None with one seed).
    p: the two-sided paired t-test's p-value (None with one seed).
    holm_p: `p` adjusted by Holm's method over the report's family of tests.
    mixed: marks of what differs between paired runs: 'backend' (e.g. GPU
      against CPU), 'code' (another commit, a modified tree, or not recorded).
    complete: both columns have the seeds the grid asks for; an incomplete
      comparison is shown, adjusted, but never called a claim.
  """
  diffs: list
  ci: Optional[tuple]
  p: Optional[float]
  holm_p: Optional[float] = None
  mixed: tuple = ()
  complete: bool = True

  @property
  def mean(self) -> float:
    return sum(self.diffs) / len(self.diffs)


def paired_test(mine: dict, base: dict, prov_mine: Optional[dict] = None,
                prov_base: Optional[dict] = None,
                equivalent_code: bool = False) -> Optional[PairedTest]:
  """The `PairedTest` of {seed: score} `mine` against `base` (None: no shared seed).

  prov_mine / prov_base: {seed: `provenance(results)`}; a pair whose backends
  differ is marked 'backend', one whose code versions differ or are not recorded
  'code' (unless `equivalent_code`: told they compute the same)."""
  from scipy import stats
  seeds = sorted(set(mine) & set(base), key=str)
  if not seeds:
    return None
  d = [mine[k] - base[k] for k in seeds]
  p = None
  if len(d) > 1:
    mu, sd = _mean_std(d)
    if sd > 0:
      p = float(2 * stats.t.sf(abs(mu) / (sd / math.sqrt(len(d))), len(d) - 1))
    else:
      p = 0.0 if mu != 0 else 1.0
  mixed = []
  if prov_mine is not None and prov_base is not None:
    pairs = [(prov_mine.get(k, (None,) * 3), prov_base.get(k, (None,) * 3)) for k in seeds]
    if any(a[0] != b[0] for a, b in pairs):
      mixed.append('backend')
    if not equivalent_code and any(a[1] is None or b[1] is None or a[1] != b[1] or a[2] or b[2]
                                   for a, b in pairs):
      mixed.append('code')
  return PairedTest(d, t_interval(d), p, mixed=tuple(mixed))


def holm(tests: list) -> None:
  """Sets each test's `holm_p`: Holm's step-down adjustment over `tests` (the
  family), which controls the chance of any false claim among them at the level
  the adjusted p-values are read at. Tests without a p-value are not in it."""
  family = sorted((t for t in tests if t.p is not None), key=lambda t: t.p)
  running = 0.0
  for i, t in enumerate(family):
    running = max(running, min(1.0, (len(family) - i) * t.p))
    t.holm_p = running


# The level at which the report calls an adjusted difference a claim.
ALPHA = 0.05
MIXED_MARKS = {'backend': '†', 'code': '‡'}


def _p_value(p: float) -> str:
  """'=0.032', or '<1e-4' below it (float noise in near-constant differences)."""
  return '<1e-4' if p < 1e-4 else f'={p:.2g}'


def format_test(test: Optional[PairedTest], with_wins: bool) -> str:
  """A report cell: mean difference, 95% t-interval, seeds ahead, p-value, its
  Holm-adjusted value ('claim' when under ALPHA) and the mixed-provenance marks."""
  if test is None:
    return 'n/a'
  text = f'{test.mean:+.2f}' + (f' [{test.ci[0]:+.2f}, {test.ci[1]:+.2f}]' if test.ci
                                else ' [no interval: 1 seed]')
  if with_wins:
    text += f' (ahead on {sum(x > 0 for x in test.diffs)}/{len(test.diffs)})'
  if test.p is not None:
    text += f' p{_p_value(test.p)}'
    if test.holm_p is not None:
      text += f', Holm{_p_value(test.holm_p)}' + (
          ('' if test.holm_p >= ALPHA else ' **claim**' if test.complete
           else ' (incomplete cell: no claim)'))
  return text + ''.join(MIXED_MARKS[m] for m in test.mixed)
