"""Named experimental protocols: the settings every run of a grid shares.

A protocol (`Protocol`) is registered here with `register_protocol`, and a sweep
names it (`nar sweep --protocol NAME`, `experiments.sweep`); this module also
holds how a multi-task entry of a grid is written ('a+b', `algorithm_entries`)
and the paper's Triplet-GMPNN scores the report compares with.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from nar.config import ConfigError, TrainConfig
from nar.catalogue import CLRS30_ALGORITHMS


@dataclasses.dataclass(frozen=True)
class Protocol:
  """A named experimental protocol: the TrainConfig settings every run of a grid
  shares, how many seeds a grid takes by default, and per-algorithm exceptions.
  A run's settings are, last wins: TrainConfig defaults, `overrides`,
  `algorithm_overrides[algorithm]`, the sweep's `--set`, its `--vary` value.
  Changing a registered protocol changes the configuration of its finished runs:
  `nar sweep` would then refuse their directories (other settings) instead of
  recognising them, so add a protocol rather than edit one that has results."""
  name: str
  overrides: Mapping[str, Any]
  seeds: int
  algorithm_overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
  description: str = ''
  # Algorithms whose runs are too long for `seeds` of them: their own count.
  algorithm_seeds: Mapping[str, int] = dataclasses.field(default_factory=dict)

  def seeds_for(self, algorithm: str) -> int:
    """How many seeds the protocol gives `algorithm` (a multi-task entry: the
    fewest of its members', the costly member's run being part of it)."""
    return min(self.algorithm_seeds.get(a, self.seeds)
               for a in algorithm.split(MULTI_TASK_JOIN))

  def settings(self, algorithm: str) -> dict:
    """The protocol's TrainConfig settings for one algorithm, or for a multi-task
    entry ('a+b+c', `MULTI_TASK_JOIN`): its algorithms' common settings, with
    `steps` and `eval_every` the largest of theirs times the number of
    algorithms (each algorithm trains at least its single-task run's steps and
    is validated as often); other settings that differ are refused."""
    members = algorithm.split(MULTI_TASK_JOIN)
    if len(members) == 1:
      return {**self.overrides, **self.algorithm_overrides.get(algorithm, {})}
    each = [self.settings(a) for a in members]
    defaults = TrainConfig()
    merged = {}
    for key in sorted(set().union(*each)):
      values = [e.get(key, getattr(defaults, key)) for e in each]
      if key in SCALED_BY_ALGORITHMS:
        merged[key] = len(members) * max(values)
      elif all(v == values[0] for v in values):
        merged[key] = values[0]
      else:
        raise ConfigError(f'protocol {self.name!r} sets {key} differently for the algorithms of '
                          f'{algorithm} ({", ".join(f"{a}: {v}" for a, v in zip(members, values))}); '
                          f'choose one with --set {key}=VALUE')
    return merged


# A sweep's multi-task entry joins algorithm names with '+' ('insertion_sort+bfs+dfs':
# one run training the three, in a directory of that name, as `nar train` names it).
# ',' (`nar train`'s separator) is accepted too and read as '+' (`algorithm_entries`);
# names separated by spaces are separate runs.
MULTI_TASK_JOIN = '+'
MULTI_TASK_SEPARATORS = (MULTI_TASK_JOIN, ',')


def algorithm_entries(items) -> list:
  """The grid's algorithm entries (`--algorithms`), each item one run: a single
  name, or a multi-task run whose names are joined by '+' or ',' (both written
  as '+': 'insertion_sort,bfs' is the run 'insertion_sort+bfs')."""
  out = []
  for item in items:
    for sep in MULTI_TASK_SEPARATORS:
      item = item.replace(sep, MULTI_TASK_JOIN)
    out.append(item)
  return out
# Counted in steps of the whole multi-task run, one algorithm per step.
SCALED_BY_ALGORITHMS = ('steps', 'eval_every')


PROTOCOLS: dict[str, Protocol] = {}   # name -> Protocol, in registration order


def register_protocol(protocol: Protocol) -> Protocol:
  """Adds `protocol` to PROTOCOLS (`nar sweep --protocol NAME`); its settings
  are checked against TrainConfig now, not when a sweep first uses them."""
  if not protocol.name or protocol.name in PROTOCOLS:
    raise ConfigError(f'protocol name {protocol.name!r} is empty or already registered')
  fields = {f.name for f in dataclasses.fields(TrainConfig)}
  fixed = {'algorithm', 'method', 'seed', 'out'}   # set per run by the sweep
  for where, values in [('overrides', protocol.overrides),
                        *((f'algorithm_overrides[{a!r}]', v)
                          for a, v in protocol.algorithm_overrides.items())]:
    bad = sorted(set(values) - (fields - fixed))
    if bad:
      raise ConfigError(f'protocol {protocol.name!r}: {where} sets {", ".join(bad)}, '
                        'which a protocol cannot set')
  for where, named in (('algorithm_overrides', protocol.algorithm_overrides),
                       ('algorithm_seeds', protocol.algorithm_seeds)):
    unknown = sorted(set(named) - set(CLRS30_ALGORITHMS))
    if unknown:
      raise ConfigError(f'protocol {protocol.name!r}: {where} names unknown algorithms '
                        f'{", ".join(unknown)}')
  for where, n in [('seeds', protocol.seeds),
                   *((f'algorithm_seeds[{a!r}]', n) for a, n in protocol.algorithm_seeds.items())]:
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
      raise ConfigError(f'protocol {protocol.name!r}: {where} must be a positive integer')
  PROTOCOLS[protocol.name] = protocol
  return protocol


def get_protocol(name: str) -> Protocol:
  if name not in PROTOCOLS:
    raise ConfigError(f"unknown protocol '{name}'; choose one of: {', '.join(PROTOCOLS)}")
  return PROTOCOLS[name]


# The committed results (results/) were run with these settings: keep them as they are.
register_protocol(Protocol(
    name='paper',
    overrides=dict(hidden=128, batch_size=32, steps=10_000, eval_every=50, test_size=64),
    seeds=10,
    description='The training budget and model size of Ibarz et al. 2022 (10,000 steps, '
                'hidden 128, batch 32, 10 seeds); meant for accelerators.'))
register_protocol(Protocol(
    name='cpu',
    overrides=dict(hidden=32, batch_size=16, steps=500, eval_every=100, test_size=64),
    seeds=3,
    # At 500 steps the cpu baseline stays under 0.9 validation on dfs (70.1, 3 seeds)
    # and naive_string_matcher (76.5); at 2,000 steps it reaches 0.92 and 0.96
    # (results/protocol-check, seed 0), about 13 minutes a run.
    algorithm_overrides={'dfs': dict(steps=2000, eval_every=250),
                         'naive_string_matcher': dict(steps=2000, eval_every=250)},
    description='Sized for a 2-core CPU: a baseline run in 2-10 minutes, and the baseline '
                'at >= 0.9 in-distribution validation (results/cpu, results/README.md); '
                'dfs and naive_string_matcher need 2,000 steps for that.'))

register_protocol(Protocol(
    name='mid',
    overrides=dict(hidden=64, batch_size=32, steps=3000, eval_every=100, test_size=64),
    seeds=5,
    # 5 seeds where a run takes under 15 minutes, 3 otherwise (issue 15): a quicksort
    # baseline run trains for ~30 minutes on a 2-core CPU (results/mid/README.md).
    algorithm_seeds={'quicksort': 3},
    description='Between cpu and paper: hidden 64, the reference batch of 32, validation '
                'every 100 steps, test at n = 64; the step budget chosen by the protocol '
                'check in results/mid/README.md ("Protocol check"); quicksort 3 seeds.'))

# Triplet-GMPNN OOD micro-F1 (Ibarz et al. 2022, 10 seeds, 10,000 steps), in %.
TRIPLET_GMPNN = {
    'activity_selector': 95.18, 'articulation_points': 88.32, 'bellman_ford': 97.39,
    'bfs': 99.73, 'binary_search': 77.58, 'bridges': 93.99, 'bubble_sort': 67.68,
    'dag_shortest_paths': 98.19, 'dfs': 47.79, 'dijkstra': 96.05,
    'find_maximum_subarray_kadane': 76.36, 'floyd_warshall': 48.52, 'graham_scan': 93.62,
    'heapsort': 31.04, 'insertion_sort': 78.14, 'jarvis_march': 91.01, 'kmp_matcher': 19.51,
    'lcs_length': 80.51, 'matrix_chain_order': 91.68, 'minimum': 97.78, 'mst_kruskal': 89.80,
    'mst_prim': 86.39, 'naive_string_matcher': 78.67, 'optimal_bst': 73.77,
    'quickselect': 0.47, 'quicksort': 64.64, 'segments_intersect': 97.64,
    'strongly_connected_components': 43.43, 'task_scheduling': 87.25, 'topological_sort': 87.27,
}
