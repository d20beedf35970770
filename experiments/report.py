"""The report of a grid (`nar report`): markdown tables of the OOD test scores with
paired differences (Holm-adjusted over the report's comparisons), the controls
and ablations, in-distribution validation and cost, scores against test size,
invariance and per-family means (`report`), and the PNG plots beside them.

    nar report results/cpu
"""

from __future__ import annotations

import os
from typing import Optional

from experiments.protocols import TRIPLET_GMPNN
from experiments.scores import _Scores, _scores, collect
from experiments.stats import ALPHA, _mean_std, format_test, holm, paired_test
from nar.config import ConfigError
from nar.catalogue import FAMILIES


def _test_key(s: '_Scores', algorithm: str, mine: str, ref: str, size: Optional[int] = None):
  """The key of a comparison in `_Scores.tests`; the OOD test's own size is None."""
  return (algorithm, mine, ref, None if size == s.test_sizes.get(algorithm) else size)


def collect_tests(s: '_Scores') -> dict:
  """Every paired comparison the report shows (the OOD table's, the controls' and
  ablations', and every test size's), keyed by `_test_key`, Holm-adjusted as one
  family."""
  tests = {}
  compared = [(m, 'baseline') for m in s.others] + s.comparison_pairs
  for a in s.algos:
    for m, c in compared:
      for n in [None] + s.sizes_by_algorithm.get(a, []):
        key = _test_key(s, a, m, c, n)
        if key in tests:
          continue
        if key[3] is None:
          mine, base = s.by_seed.get((a, m), {}), s.by_seed.get((a, c), {})
        else:
          mine, base = s.by_size.get((a, m, n), {}), s.by_size.get((a, c, n), {})
        tests[key] = paired_test(mine, base, s.provenance.get((a, m)), s.provenance.get((a, c)),
                                 s.equivalent_code)
        if tests[key] is not None:
          tests[key].complete = s.complete.get((a, m), True) and s.complete.get((a, c), True)
  holm([t for t in tests.values() if t is not None])
  return tests


def _paired_difference(s: _Scores, algorithm: str, method: str) -> str:
  """The OOD table's difference cell of `method` against the baseline."""
  return format_test(s.tests.get(_test_key(s, algorithm, method, 'baseline')), with_wins=True)


def _family_note(s: _Scores) -> list[str]:
  """What the p-values are adjusted over, and what the marks mean."""
  counted = [t for t in s.tests.values() if t is not None and t.p is not None]
  claims = sum(t.holm_p < ALPHA and t.complete for t in counted)
  lines = ['', f'Multiple comparisons: the family is every paired comparison this report shows '
           f'with at least two seeds ({len(counted)} intervals, all tables and test sizes); '
           f'p is the two-sided paired t-test, "Holm" its Holm-adjusted value over that '
           f'family; **claim**: adjusted p < {ALPHA} in a complete cell ({claims} of {len(counted)}). An '
           'unadjusted interval that excludes zero is not a claim.']
  marks = {m for t in s.tests.values() if t is not None for m in t.mixed}
  if 'backend' in marks:
    lines.append('† pairs runs of different backends (e.g. GPU against CPU): the difference '
                 'includes the backend\'s.')
  if 'code' in marks:
    lines.append('‡ pairs runs whose code versions differ or were not recorded (results.json '
                 '`versions.code`, recorded since schema 2); pass `--equivalent-code` when '
                 'the differences are known not to change the computation.')
  return lines


def _invariance_table(s: _Scores) -> list[str]:
  """Invariance across twins (`nar evaluate RUN --invariance`) beside the OOD
  score, per algorithm and column: whether more invariance goes with more
  generalisation."""
  if not s.invariance:
    return []
  lines = ['', 'Invariance of the next step across twins (`nar evaluate RUN --invariance`: '
           'validation originals and their twins, valid step pairs, one step from the same '
           'state), mean over the seeds measured (count): retrieval = fraction of anchors '
           'whose most similar candidate on the other side is the true partner (cosine of the '
           'raw representations; critic: in the critics\' space, Hint-ReLIC only); agreement = '
           'same next-hint prediction on the original nodes; similarity of partners / '
           'non-partners. OOD: mean over the same seeds.', '',
           '| algorithm | column | seeds | retrieval | critic retrieval | agreement | '
           'partner sim | other sim | OOD |', '|' + '---|' * 9]

  def mean_of(rows, key):
    xs = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return f'{sum(xs) / len(xs):.3f}' if xs else 'n/a'
  for a in s.algos:
    for m in s.methods:
      measured = s.invariance.get((a, m), {})
      if not measured:
        continue
      rows = list(measured.values())
      ood = [s.by_seed[(a, m)][k] for k in measured if k in s.by_seed.get((a, m), {})]
      lines.append(f'| {a} | {m} | {len(rows)} | ' + ' | '.join(
          mean_of(rows, k) for k in ('retrieval', 'retrieval_critic', 'agreement',
                                     'similarity_partner', 'similarity_other'))
          + (f' | {sum(ood) / len(ood):.2f} |' if ood else ' | n/a |'))
  return lines


def _ood_table(root: str, s: _Scores) -> list[str]:
  """Title, and the OOD test score per algorithm and column, with the paper's
  Triplet-GMPNN and the paired differences to the baseline."""
  lines = [f'# Results under `{root}`', '',
           'OOD test score (micro-F1 family, `clrs.evaluate`) in %, mean +- std over seeds '
           '(count in brackets). Triplet-GMPNN: Ibarz et al. 2022, 10 seeds, 10,000 steps. '
           + ('A cell with fewer seeds than the grid asked for (or than the protocol gives the '
              'algorithm, where fewer: its long runs) is marked *incomplete* and '
              'left out of the family means.' if s.expected_seeds else '')
           + ' Differences are paired by seed (over the seeds both methods have): mean of the '
           'per-seed differences, its 95% t-interval over seeds in brackets (an interval that '
           'holds zero shows no difference), and on how many seeds the method is ahead.', '']
  head = '| algorithm | ' + ' | '.join(s.methods) + ' | Triplet-GMPNN |'
  if s.others:
    head += ' ' + ' | '.join(f'{m} - baseline' for m in s.others) + ' |'
  lines += [head, '|' + '---|' * (head.count('|') - 1)]
  for a in s.algos:
    cells = []
    for m in s.methods:
      xs = s.by.get((a, m), [])
      if not xs:
        cells.append('missing')
        continue
      mu, sd = _mean_std(xs)
      cells.append(f'{mu:.2f} +- {sd:.2f} ({len(xs)})'
                   + ('' if s.complete[(a, m)] else ' *incomplete*'))
    line = f'| {a} | ' + ' | '.join(cells) + f" | {TRIPLET_GMPNN.get(a, float('nan')):.2f} |"
    if s.others:
      line += ' ' + ' | '.join(_paired_difference(s, a, m) for m in s.others) + ' |'
    lines.append(line)
  return lines


def _control_table(s: _Scores) -> list[str]:
  """The paired differences of `_comparison_pairs`, paired by seed as against the
  baseline. Empty without such columns."""
  pairs = s.comparison_pairs
  if not pairs:
    return []
  lines = ['', 'Against the variants of the baseline (controls) and against ablations of a '
           'method, paired by seed as above; algorithms where no reference column has a run '
           'are left out:', '']
  head = '| algorithm | ' + ' | '.join(f'{m} - {c}' for m, c in pairs) + ' |'
  lines += [head, '|' + '---|' * (head.count('|') - 1)]
  references = sorted({c for _, c in pairs})
  for a in s.algos:
    if not any(s.by_seed.get((a, c)) for c in references):
      continue
    lines.append(f'| {a} | ' + ' | '.join(
        format_test(s.tests.get(_test_key(s, a, m, c)), with_wins=True)
        for m, c in pairs) + ' |')
  return lines


def _validation_table(s: _Scores) -> list[str]:
  """In distribution: best validation score (n = 16, model selection) and cost.
  The last column is model selection across columns (e.g. the values of a --vary
  sweep): the one with the highest mean validation score, never the test score."""
  lines = ['', 'Best in-distribution validation score in % (mean +- std) and minutes per run '
           '(compile + train + validation + test, mean); the last column names the '
           'method with the highest mean validation score:', '',
           '| algorithm | ' + ' | '.join(f'{m} val | {m} min' for m in s.methods)
           + ' | highest validation |',
           '|' + '---|' * (2 * len(s.methods) + 2)]
  for a in s.algos:
    cells = []
    for m in s.methods:
      v, t = s.val_by.get((a, m)), s.minutes_by.get((a, m))
      cells.append(f'{_mean_std(v)[0]:.1f} +- {_mean_std(v)[1]:.1f}' if v else 'n/a')
      cells.append(f'{sum(t) / len(t):.1f}' if t else 'n/a')
    scored = [(_mean_std(s.val_by[(a, m)])[0], m) for m in s.methods if s.val_by.get((a, m))]
    cells.append(max(scored)[1] if scored else 'n/a')
    lines.append(f'| {a} | ' + ' | '.join(cells) + ' |')
  return lines


def _size_table(s: _Scores) -> list[str]:
  """OOD score against test size, where runs were evaluated at more than one
  size (`nar evaluate RUN --size 16,32,128`): generalisation as a curve."""
  sizes_of = s.sizes_by_algorithm
  if not sizes_of:
    return []
  head = '| algorithm | n | ' + ' | '.join(s.methods) + ' |'
  compared = [(m, 'baseline') for m in s.others] + s.comparison_pairs
  if compared:
    head += ' ' + ' | '.join(f'{m} - {c}' for m, c in compared) + ' |'
  lines = ['', 'OOD score (%) against test size: mean +- std over seeds (count); n = the test '
           'split for the protocol\'s test size, otherwise `nar evaluate --size` of the best '
           'checkpoint (the test split\'s seed, kept in each run\'s evaluations.json). '
           'Differences paired by seed with their 95% t-interval.', '',
           head, '|' + '---|' * (head.count('|') - 1)]
  for a, sizes in sizes_of.items():
    for n in sizes:
      cells = []
      for m in s.methods:
        xs = list(s.by_size.get((a, m, n), {}).values())
        cells.append(f'{_mean_std(xs)[0]:.2f} +- {_mean_std(xs)[1]:.2f} ({len(xs)})'
                     if xs else 'n/a')
      line = f'| {a} | {n} | ' + ' | '.join(cells) + ' |'
      if compared:
        diffs = [format_test(s.tests.get(_test_key(s, a, m, c, n)), with_wins=False)
                 for m, c in compared]
        line += ' ' + ' | '.join(diffs) + ' |'
      lines.append(line)
  return lines


def _family_table(s: _Scores) -> list[str]:
  """Per family: mean over algorithms whose cells are complete. A partial mean
  names its algorithms: means over different sets are not comparable."""
  def complete(a, m):
    return s.complete.get((a, m), False)

  family_head = '| family | ' + ' | '.join(s.methods) + ' | Triplet-GMPNN |'
  if s.others:
    family_head += ' ' + ' | '.join(f'{m} - baseline' for m in s.others) + ' |'
  lines = ['', 'Per CLRS family: mean over the algorithms each cell names (complete cells '
           'only); Triplet-GMPNN over the whole family.'
           + (' A difference column compares a method with the baseline over the algorithms '
              'both have complete, so the two means are over the same set.' if s.others else ''),
           '', family_head, '|' + '---|' * (family_head.count('|') - 1)]
  for fam, members in FAMILIES.items():
    present = [a for a in members if a in s.algos]
    if not present:
      continue
    cells = []
    for m in s.methods:
      used = [a for a in present if (a, m) in s.by and complete(a, m)]
      vals = [s.mean[(a, m)] for a in used]
      which = 'all' if len(used) == len(members) else ', '.join(used)
      cells.append(f'{sum(vals) / len(vals):.2f} ({len(used)}/{len(members)}: {which})'
                   if vals else 'n/a')
    ref = sum(TRIPLET_GMPNN[a] for a in members) / len(members)
    line = f'| {fam} | ' + ' | '.join(cells) + f' | {ref:.2f} |'
    if s.others:
      diffs = []
      for m in s.others:
        shared = [a for a in present if complete(a, m) and complete(a, 'baseline')]
        if not shared:
          diffs.append('n/a')
          continue
        d = [s.mean[(a, m)] - s.mean[(a, 'baseline')] for a in shared]
        ahead = sum(x > 0 for x in d)
        diffs.append(f'{sum(d) / len(d):+.2f} (ahead on {ahead}/{len(shared)}: '
                     f'{", ".join(shared)})')
      line += ' ' + ' | '.join(diffs) + ' |'
    lines.append(line)
  return lines


def report(root: str, out_md: Optional[str] = None, plots: bool = True,
           equivalent_code: bool = False) -> str:
  """Markdown tables (and PNG plots) from every results.json under `root`:
  OOD test scores with paired differences (p-values Holm-adjusted over the
  report's comparisons), in-distribution validation and cost, scores against
  test size, invariance, per-family means. `equivalent_code`: the code versions
  of paired runs are known to compute the same (no 'code' marks)."""
  rows = collect(root)
  if not rows:
    raise ConfigError(f'no results.json under {root}')
  s = _scores(root, rows)
  s.equivalent_code = equivalent_code
  s.test_sizes = {a: max(set(ns), key=ns.count) for a in s.algos
                  for ns in [[r['test_size'] for r in rows if r['algorithm'] == a
                              and isinstance(r.get('test_size'), int)]] if ns}
  s.tests = collect_tests(s)
  text = '\n'.join(_ood_table(root, s) + _control_table(s) + _family_note(s)
                   + _validation_table(s) + _size_table(s) + _invariance_table(s)
                   + _family_table(s)) + '\n'
  out_md = out_md or os.path.join(root, 'report.md')
  if plots:     # beside the markdown, which links them by name
    plot_dir = os.path.dirname(os.path.abspath(out_md))
    os.makedirs(plot_dir, exist_ok=True)
    text += _plots(plot_dir, rows, s.methods, s.algos, s.by)
    text += _size_plot(plot_dir, s)
  from nar import storage
  storage.atomic_write(out_md, text)
  return text


def _plots(plot_dir, rows, methods, algos, by) -> str:
  import matplotlib
  from nar import storage
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  # Per algorithm only the methods it has, side by side (a sparse grid, e.g. ablations
  # on one algorithm, leaves no gaps); a method keeps its colour everywhere; each
  # seed is a dot on its bar, the paper's Triplet-GMPNN a black line across the group.
  colour = {m: f'C{k % 10}' for k, m in enumerate(methods)}
  bars = sum(1 for a in algos for m in methods if by.get((a, m)))
  fig, ax = plt.subplots(figsize=(min(24, max(6, 0.45 * bars + 1.2 * len(algos) + 2.5)), 4.2))
  labelled = set()
  for i, a in enumerate(algos):
    present = [m for m in methods if by.get((a, m))]
    width = 0.8 / max(len(present), 1)
    for k, m in enumerate(present):
      x = i - 0.4 + width * (k + 0.5)
      mu, sd = _mean_std(by[(a, m)])
      ax.bar(x, mu, width, yerr=sd, capsize=3, color=colour[m],
             label=None if m in labelled else m)
      labelled.add(m)
      ax.scatter([x] * len(by[(a, m)]), by[(a, m)], s=9, c='k', zorder=4)
    if a in TRIPLET_GMPNN:
      ax.hlines(TRIPLET_GMPNN[a], i - 0.42, i + 0.42, colors='k', linestyles='--',
                label=None if 'ref' in labelled else 'Triplet-GMPNN (paper)', zorder=5)
      labelled.add('ref')
  ax.set_xticks(range(len(algos)))
  ax.set_xticklabels(algos, rotation=20, ha='right')
  ax.set_ylabel('OOD score (%), dots: seeds')
  ax.set_ylim(0, 105)
  ax.legend(fontsize=8, loc='upper left', bbox_to_anchor=(1.0, 1.0))
  fig.tight_layout()
  fig.savefig(os.path.join(plot_dir, 'ood_scores.png'), dpi=120)
  plt.close(fig)
  fig, axes = plt.subplots(1, len(algos), figsize=(4 * len(algos), 3.2), squeeze=False)
  seen = set()
  for ax, a in zip(axes[0], algos):
    for r in rows:
      if r['algorithm'] != a:
        continue
      path = os.path.join(r['_dir'], 'metrics.jsonl')
      if not os.path.exists(path):
        continue
      records, _ = storage.read_jsonl(path)      # a torn line is left out
      val = [v for v in records if v.get('kind') == 'val' and 'step' in v and 'score' in v]
      if r.get('_multi_task'):     # the algorithm's own curve, not the summed score
        val = [{'step': v['step'], 'score': v['per_algorithm'][a]['score']} for v in val
               if isinstance(v.get('per_algorithm'), dict) and a in v['per_algorithm']]
      label = r['_label']
      ax.plot([v['step'] for v in val], [v['score'] for v in val],
              color=f'C{methods.index(label) % 10}', alpha=0.7,
              label=None if (a, label) in seen else label)      # one legend entry per method
      seen.add((a, label))
    ax.set_title(a)
    ax.set_xlabel('step')
    ax.set_ylabel('validation score')
    ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(os.path.join(plot_dir, 'validation_curves.png'), dpi=120)
  plt.close(fig)
  return '\n![OOD scores](ood_scores.png)\n\n![Validation curves](validation_curves.png)\n'


def _size_plot(plot_dir: str, s: _Scores) -> str:
  """ood_vs_size.png: per algorithm, the mean OOD score of each method against
  test size (log scale), a band of +- one std over seeds, each seed a dot."""
  sizes_of = s.sizes_by_algorithm
  algos = list(sizes_of)
  if not algos:
    return ''
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(algos), figsize=(3.8 * len(algos), 3.2), squeeze=False)
  for ax, a in zip(axes[0], algos):
    for k, m in enumerate(s.methods):
      ns = [n for n in sizes_of[a] if s.by_size.get((a, m, n))]
      if not ns:
        continue
      stats = [_mean_std(list(s.by_size[(a, m, n)].values())) for n in ns]
      mu = [x[0] for x in stats]
      sd = [x[1] for x in stats]
      colour = f'C{k % 10}'
      ax.plot(ns, mu, marker='o', color=colour, label=m)
      ax.fill_between(ns, [u - v for u, v in zip(mu, sd)], [u + v for u, v in zip(mu, sd)],
                      color=colour, alpha=0.15)
      for n in ns:
        ys = list(s.by_size[(a, m, n)].values())
        ax.scatter([n] * len(ys), ys, s=6, color=colour, alpha=0.6)
    ax.set_xscale('log', base=2)
    ax.set_xticks(sizes_of[a])
    ax.set_xticklabels([str(n) for n in sizes_of[a]])
    ax.set_ylim(0, 105)
    ax.set_title(a)
    ax.set_xlabel('test size n (train: n <= 16)')
    ax.set_ylabel('OOD score (%)')
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(plot_dir, 'ood_vs_size.png'), dpi=120)
  plt.close(fig)
  return '\n![OOD score against test size](ood_vs_size.png)\n'
