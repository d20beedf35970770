"""Coverage report of the augmentation rules (wired as `nar augment-report`).

Coverage is the share of the original's transitions t -> t+1 that have a valid
twin pair, pooled over the samples (all hints together, and per hint). Speed is
augmentations per second, rule + dm-clrs re-execution + comparison + alignment,
timed after one untimed pass over the same samples (JAX compiles dm-clrs's
permutation processing once per new twin size; in training those sizes recur).
"""

from __future__ import annotations

import argparse
import time
import traceback
from typing import Any, Sequence

import numpy as np

import augment
from augment import core
from nar import sample as sample_lib


def size_for(algorithm: str, size: int) -> int:
  """The string matchers' n is haystack + needle, and their sampler embeds a
  needle of up to 8 characters in a longer haystack: 20 at training size."""
  return max(size, 20) if algorithm in sample_lib.STRING_MATCHERS else size


def _samples(algorithm: str, count: int, size: int, seed: int) -> list[sample_lib.Sample]:
  sampler = sample_lib.sampler_for(algorithm, seed)
  kwargs = sample_lib.protocol_kwargs(algorithm, 'train')
  pos_rng = np.random.RandomState(seed)
  return [sample_lib.sample_from_args(algorithm, sample_lib.draw_args(sampler, size, kwargs),
                                      pos_rng=pos_rng) for _ in range(count)]


def _run(augmenter: core.Augmenter, samples: Sequence[sample_lib.Sample], seed: int,
         align: str) -> tuple[list[core.AugmentedSample], float]:
  start = time.perf_counter()
  out = [augmenter(s, np.random.default_rng([seed, i]), align=align)
         for i, s in enumerate(samples)]
  elapsed = time.perf_counter() - start
  return out, (len(samples) / elapsed if elapsed > 0 else float('inf'))


def _pooled(augs: Sequence[core.AugmentedSample], hint: str | None = None) -> float:
  total = sum(a.num_transitions for a in augs)
  if total == 0:
    return float('nan')
  valid = sum(int(np.count_nonzero(a.fully_valid if hint is None else a.hint_valid[hint]))
              for a in augs)
  return valid / total


def coverage_table(algorithms: Sequence[str] | None = None, samples: int = 20,
                   sizes: Sequence[int] = (16,), seed: int = 0) -> list[dict[str, Any]]:
  """One row per (algorithm, size). Algorithms without a rule get a row with
  their reason; a rule that raises gets a row with the error."""
  entries = augment.all_entries()
  if algorithms is None:
    algorithms = sorted(entries)
  rows = []
  for alg in algorithms:
    entry = entries.get(alg)
    base = {'algorithm': alg, 'family': sample_lib.family_of(alg),
            'has_rule': bool(entry and entry.rule),
            'description': entry.description if entry else '',
            'reason': entry.reason if entry else 'not registered'}
    if not base['has_rule']:
      rows.append({**base, 'size': None})
      continue
    augmenter = augment.get(alg)
    for size in sizes:
      size = size_for(alg, size)
      row = {**base, 'size': size, 'samples': samples}
      try:
        data = _samples(alg, samples, size, seed)
        _run(augmenter, data, seed, 'state')  # warm-up: compiles per twin size
        state, state_rate = _run(augmenter, data, seed, 'state')
        prefix, prefix_rate = _run(augmenter, data, seed, 'prefix')
      except Exception as e:  # pylint: disable=broad-except
        row['error'] = f'{type(e).__name__}: {e}'
        row['traceback'] = traceback.format_exc(limit=3)
        rows.append(row)
        continue
      row.update(
          coverage_state=_pooled(state), coverage_prefix=_pooled(prefix),
          hint_coverage_state={h: _pooled(state, h) for h in core.hint_names(alg)},
          hint_coverage_prefix={h: _pooled(prefix, h) for h in core.hint_names(alg)},
          mean_added=float(np.mean([a.num_added for a in state])),
          mean_length=float(np.mean([a.original.length for a in state])),
          mean_twin_length=float(np.mean([a.twin.length for a in state])),
          samples_per_s_state=state_rate, samples_per_s_prefix=prefix_rate)
      rows.append(row)
  return rows


def _pct(x: float) -> str:
  return '-' if x is None or np.isnan(x) else f'{100 * x:.0f}%'


HEADER = """\
Columns: coverage = share of the original's transitions t -> t+1 with a twin
pair valid for all hints (pooled over the samples), with state alignment (whole
twin trajectory, monotone) and prefix alignment (t' = t); per hint = the same
for each hint alone (state alignment); added = mean number of new nodes;
T -> T' = mean trajectory lengths of original and twin; aug/s = augmentations
per second (rule + dm-clrs re-execution + comparison + alignment, one process).
A pair is kept only if valid for at least half of the hints
(`augment.core.MIN_VALID_FRACTION`): rarer agreements are coincidences of
low-information hints, not the same step.
"""


def to_markdown(rows: Sequence[dict[str, Any]], header: str = '') -> str:
  lines = ['| algorithm | n | coverage state | coverage prefix | per hint (state) | '
           'added | T -> T\' | aug/s state | aug/s prefix |',
           '|---|---|---|---|---|---|---|---|---|']
  for r in rows:
    if not r['has_rule']:
      continue
    if 'error' in r:
      lines.append(f"| {r['algorithm']} | {r['size']} | error: {r['error'][:80]} "
                   '| | | | | | |')
      continue
    hints = ', '.join(f'{h} {_pct(v)}' for h, v in r['hint_coverage_state'].items())
    lines.append(
        f"| {r['algorithm']} | {r['size']} | {_pct(r['coverage_state'])} | "
        f"{_pct(r['coverage_prefix'])} | {hints} | {r['mean_added']:.1f} | "
        f"{r['mean_length']:.0f} -> {r['mean_twin_length']:.0f} | "
        f"{r['samples_per_s_state']:.0f} | {r['samples_per_s_prefix']:.0f} |")
  out = ([header] if header else []) + ['\n'.join(lines), '']
  missing = [r for r in rows if not r['has_rule']]
  if missing:
    out += ['Algorithms without a rule:', '']
    out += [f"- **{r['algorithm']}**: {r['reason']}" for r in missing]
    out.append('')
  out += ['Rules:', '']
  seen = set()
  for r in rows:
    if r['has_rule'] and r['algorithm'] not in seen:
      seen.add(r['algorithm'])
      out.append(f"- **{r['algorithm']}**: {r['description']}. {r['reason']}")
  return '\n'.join(out) + '\n'


def parse_algorithms(values: Sequence[str]) -> list[str]:
  """['bfs', 'dfs'], ['bfs,dfs'] or a mix -> ['bfs', 'dfs'] (checked names);
  ['all'] -> every algorithm with a registered entry."""
  algorithms = [a.strip() for v in values for a in v.split(',') if a.strip()]
  if algorithms in ([], ['all']):
    return sorted(augment.all_entries())
  for a in algorithms:
    sample_lib.check_algorithm(a)
  return algorithms


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog='nar augment-report',
      description='Coverage of the augmentation rules: share of original transitions '
                  'with a valid twin pair (all hints / per hint), state vs prefix '
                  'alignment, speed.')
  parser.add_argument('--algorithms', nargs='+', default=['all'],
                      help="names, space- or comma-separated, or 'all' (every registered one)")
  parser.add_argument('--samples', type=int, default=20, help='samples per algorithm and size')
  parser.add_argument('--sizes', default='16', help='comma-separated sizes')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--out', default=None, help='also write the markdown to this path')
  args = parser.parse_args(argv)
  try:
    algorithms = parse_algorithms(args.algorithms)
  except sample_lib.UnknownAlgorithmError as e:
    parser.exit(2, f'{parser.prog}: error: {e}\n')   # one line, like nar's errors
  sizes = [int(s) for s in args.sizes.split(',')]
  rows = coverage_table(algorithms, args.samples, sizes, args.seed)
  header = (f'# Augmentation coverage\n\n`nar augment-report --samples {args.samples} '
            f'--sizes {args.sizes} --seed {args.seed}`: {args.samples} training-like samples '
            f'per algorithm (protocol sampler, random pos).\n\n' + HEADER)
  text = to_markdown(rows, header)
  print(text)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text)
  return 1 if any('error' in r for r in rows) else 0


if __name__ == '__main__':
  raise SystemExit(main())
