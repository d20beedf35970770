"""The report pairs only what compares: provenance marks, p-values with Holm's
correction over the family it shows, method names as trained, invariance."""

import json

import pytest

from experiments import stats
from experiments.report import report
from nar.config import TrainConfig


def _run(out, method, seed, score, backend='cpu', commit='abc', modified=False, config=None,
         column=None, invariance=None):
  d = out / 'bfs' / (column or method) / f'seed{seed}'
  d.mkdir(parents=True)
  r = {'algorithm': 'bfs', 'method': method, 'seed': seed, 'test_size': 64, 'test_score': score,
       'best_val': {'score': 0.9, 'step': 5},
       'versions': {'backend': backend, 'code': {'commit': commit, 'modified': modified}}}
  if config is not None:
    r['config'] = config
  json.dump(r, open(d / 'results.json', 'w'))
  if invariance is not None:
    json.dump({'invariance': {'per_algorithm': {'bfs': invariance}}}, open(d / 'evaluations.json', 'w'))


def _row(text, start='| bfs |'):
  return next(line for line in text.splitlines() if line.startswith(start) and '(3)' in line)


def test_pairs_of_one_backend_and_commit_are_unmarked_and_mixed_ones_marked(tmp_path):
  out = tmp_path / 'same'
  for seed, (b, m) in enumerate([(0.5, 0.6), (0.52, 0.61), (0.49, 0.62)]):
    _run(out, 'baseline', seed, b)
    _run(out, 'hint_relic', seed, m)
  cell = _row(report(str(out), plots=False)).split('|')[-2]
  assert '†' not in cell and '‡' not in cell and 'ahead on 3/3' in cell
  out = tmp_path / 'mixed'
  for seed in range(3):
    _run(out, 'baseline', seed, 0.5 + 0.01 * seed, backend='gpu' if seed < 2 else 'cpu')
    _run(out, 'hint_relic', seed, 0.6, commit='abc' if seed else 'def')
  text = report(str(out), plots=False)
  assert _row(text).rstrip().endswith('†‡ |')
  assert '† pairs runs of different backends' in text and '‡ pairs runs whose code' in text
  # Told the code versions compute the same: the backend mark stays.
  told = report(str(out), plots=False, equivalent_code=True)
  assert _row(told).rstrip().endswith('† |')
  # A modified tree is another code version.
  out = tmp_path / 'modified'
  for seed in range(3):
    _run(out, 'baseline', seed, 0.5 + 0.01 * seed, modified=seed == 1)
    _run(out, 'hint_relic', seed, 0.6)
  assert _row(report(str(out), plots=False)).rstrip().endswith('‡ |')


def test_holm_adjusts_over_the_family():
  tests = [stats.PairedTest([1.0], None, p) for p in (0.01, 0.04, 0.03, None)]
  stats.holm(tests)
  # sorted 0.01, 0.03, 0.04 over 3 tests: 0.03, max(0.03, 0.06), max(0.06, 0.04)
  assert tests[3].holm_p is None
  assert [t.holm_p for t in tests[:3]] == pytest.approx([0.03, 0.06, 0.06])
  test = stats.paired_test({0: 3.0, 1: 5.0, 2: 4.0}, {0: 1.0, 1: 1.0, 2: 1.0})
  from scipy import stats as scipy_stats
  assert test.p == pytest.approx(scipy_stats.ttest_rel([3, 5, 4], [1, 1, 1]).pvalue)


def test_runs_trained_as_the_supervised_variant_are_named_so(tmp_path):
  v1 = TrainConfig(algorithm='bfs', method='hint_relic', relic_beta=1.0,
                   relic_twin='rollout').to_json()
  del v1['schema']
  out = tmp_path / 'g'
  for seed in range(3):
    _run(out, 'baseline', seed, 0.5)
    _run(out, 'hint_relic', seed, 0.6, config=v1)
    _run(out, 'hint_relic', seed, 0.7, config=v1, column='hint_relic@relic_lambda=1.0')
    _run(out, 'hint_relic', seed, 0.8, config={**v1, 'schema': 2}, column='v2')  # as written
  text = report(str(out), plots=False)
  head = next(line for line in text.splitlines() if line.startswith('| algorithm | baseline'))
  assert '| hint_relic_supervised |' in head
  assert '| hint_relic_supervised@relic_lambda=1.0 |' in head and '| hint_relic |' in head


def test_the_report_shows_invariance_beside_the_ood_score(tmp_path):
  out = tmp_path / 'g'
  for seed in range(2):
    _run(out, 'baseline', seed, 0.5, invariance={'retrieval': 0.9, 'agreement': 0.8,
                                                 'similarity_partner': 0.95,
                                                 'similarity_other': 0.7})
    _run(out, 'hint_relic', seed, 0.6, invariance={'retrieval': 0.99 - 0.01 * seed,
                                                   'retrieval_critic': 1.0, 'agreement': 0.9,
                                                   'similarity_partner': 0.99,
                                                   'similarity_other': 0.5})
  text = report(str(out), plots=False)
  assert '| bfs | baseline | 2 | 0.900 | n/a | 0.800 | 0.950 | 0.700 | 50.00 |' in text
  assert '| bfs | hint_relic | 2 | 0.985 | 1.000 | 0.900 | 0.990 | 0.500 | 60.00 |' in text
