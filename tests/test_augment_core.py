"""Unit tests of the augmentation core: comparison semantics, alignment, pos,
sample checks, registry access and the dm-clrs Feedback round trip."""

import numpy as np
import pytest

import augment
from augment import core
from nar.sample import PRED_AS_INPUT_ALGORITHMS, Sample, sample_from_args, sampler_for, draw_args, protocol_kwargs


def _one_hot(idx, n):
  v = np.zeros(n)
  v[idx] = 1.0
  return v


def _insertion_like(pred_h, i, j):
  """A hand-made insertion_sort sample: hints pred_h (pointer), i, j (mask_one)."""
  pred_h = np.asarray(pred_h, dtype=np.int64)
  t, n = pred_h.shape
  return Sample(algorithm='insertion_sort', args=(np.linspace(0, 1, n),),
                inputs={'pos': np.arange(n) / n, 'key': np.linspace(0, 1, n)},
                hints={'pred_h': pred_h,
                       'i': np.stack([_one_hot(x, n) for x in i]),
                       'j': np.stack([_one_hot(x, n) for x in j])},
                outputs={'pred': np.eye(n, dtype=np.float32),
                         'pred_mask': _one_hot(0, n).astype(np.float32)})


def test_pointer_into_added_node_disagrees():
  orig = _insertion_like([[0, 0, 1]], i=[0], j=[2])
  same = _insertion_like([[0, 0, 1, 2]], i=[0], j=[2])
  into_added = _insertion_like([[0, 3, 1, 2]], i=[0], j=[2])
  node_map = np.array([0, 1, 2])
  assert core.state_agreement(orig, same, node_map, 0, 0) == {
      'pred_h': True, 'i': True, 'j': True}
  got = core.state_agreement(orig, into_added, node_map, 0, 0)
  assert got == {'pred_h': False, 'i': True, 'j': True}


def test_pointers_are_compared_through_the_node_map():
  orig = _insertion_like([[0, 0, 1]], i=[1], j=[2])
  # Twin node 1 is added; originals are twin nodes 0, 2, 3.
  twin = _insertion_like([[0, 0, 0, 2]], i=[2], j=[3])
  node_map = np.array([0, 2, 3])
  assert core.state_agreement(orig, twin, node_map, 0, 0) == {
      'pred_h': True, 'i': True, 'j': True}
  # Same raw values without mapping would be wrong: pointer to twin node 1.
  unmapped = _insertion_like([[0, 0, 0, 1]], i=[1], j=[2])
  got = core.state_agreement(orig, unmapped, node_map, 0, 0)
  assert got == {'pred_h': False, 'i': False, 'j': False}


def test_mask_one_on_an_added_node_disagrees():
  orig = _insertion_like([[0, 0, 1]], i=[2], j=[2])
  twin = _insertion_like([[0, 0, 1, 2]], i=[3], j=[2])
  assert core.state_agreement(orig, twin, np.array([0, 1, 2]), 0, 0)['i'] is False


def _heapsort_sample(n, phase, heap_size):
  t = len(phase)
  ar = np.tile(np.arange(n), (t, 1))
  mask = np.stack([_one_hot(n - 1, n)] * t)
  return Sample(algorithm='heapsort', args=(np.zeros(n),),
                inputs={'pos': np.arange(n) / n, 'key': np.zeros(n)},
                hints={'pred_h': ar, 'parent': ar, 'i': mask, 'j': mask, 'largest': mask,
                       'heap_size': np.stack([_one_hot(h, n) for h in heap_size]),
                       'phase': np.stack([_one_hot(p, 3) for p in phase])},
                outputs={'pred': np.eye(n, dtype=np.float32),
                         'pred_mask': _one_hot(0, n).astype(np.float32)})


def test_graph_level_hint_must_be_equal_and_validity_is_per_hint():
  orig = _heapsort_sample(3, phase=[0, 1], heap_size=[2, 2])
  twin = _heapsort_sample(4, phase=[0, 2], heap_size=[2, 2])
  node_map = np.arange(3)
  assert core.state_agreement(orig, twin, node_map, 0, 0)['phase'] is True
  assert core.state_agreement(orig, twin, node_map, 1, 1)['phase'] is False
  tr = core.transition_agreement(orig, twin, node_map, 0, 0)
  assert tr['phase'] is False   # differs at the end of the transition
  assert tr['pred_h'] is True and tr['heap_size'] is True
  # The mask_one hints point at node n-1: the twin's n-1 is added node 3.
  assert tr['i'] is False


def _floyd_sample(pi, d):
  pi = np.asarray(pi, dtype=np.float64)
  t, n, _ = pi.shape
  return Sample(algorithm='floyd_warshall', args=(np.zeros((n, n)),),
                inputs={'pos': np.arange(n) / n, 'A': np.zeros((n, n)), 'adj': np.zeros((n, n))},
                hints={'Pi_h': pi, 'D': np.asarray(d, dtype=np.float64),
                       'msk': np.ones((t, n, n)), 'k': np.stack([_one_hot(0, n)] * t)},
                outputs={'Pi': pi[-1]})


def test_edge_level_hints_are_restricted_and_mapped():
  orig = _floyd_sample([[[0, 0], [1, 1]]], [[[0.0, 0.5], [0.25, 0.0]]])
  node_map = np.array([0, 2])  # twin node 1 is added
  pi = np.zeros((1, 3, 3))
  pi[0] = [[0, 1, 0], [1, 1, 1], [2, 0, 2]]  # (0,1) row targets mapped: (0,2)->0, (2,0)->2
  d = np.zeros((1, 3, 3))
  d[0, 0, 2], d[0, 2, 0] = 0.5, 0.25 + 1e-12
  d[0, 1] = 9.0  # rows/cols of the added node are ignored
  twin = _floyd_sample(pi, d)
  twin.hints['k'] = np.stack([_one_hot(0, 3)])
  assert core.state_agreement(orig, twin, node_map, 0, 0) == {
      'Pi_h': True, 'D': True, 'msk': True, 'k': True}
  twin.hints['Pi_h'][0, 0, 2] = 1  # original edge (0,1) now points to the added node
  twin.hints['D'][0, 2, 0] = 0.25 + 1e-4
  got = core.state_agreement(orig, twin, node_map, 0, 0)
  assert got['Pi_h'] is False and got['D'] is False


def test_matrix_agrees_with_pairwise_comparison_on_a_real_twin():
  alg = 'bubble_sort'
  s = sample_from_args(alg, draw_args(sampler_for(alg, 3), 6, protocol_kwargs(alg, 'train')))
  aug = augment.get(alg)(s, 0)
  mats = core.state_agreement_matrix(aug.original, aug.twin, aug.node_map)
  rng = np.random.default_rng(0)
  for _ in range(40):
    t, tt = rng.integers(s.length), rng.integers(aug.twin.length)
    single = core.state_agreement(aug.original, aug.twin, aug.node_map, t, tt)
    assert single == {h: bool(m[t, tt]) for h, m in mats.items()}


def test_alignment_prefers_full_pairs_and_is_strictly_monotone():
  full = np.zeros((3, 6), bool)
  full[0, 1] = full[1, 3] = full[2, 4] = True
  partial = full.copy()
  partial[1, 2] = True  # a pair valid for one hint only, before the full one
  pairs, valid = core.align_pairs({'a': full, 'b': partial}, 'state', min_valid_fraction=0)
  assert pairs.tolist() == [[0, 1], [1, 3], [2, 4]]
  assert valid['a'].all() and valid['b'].all()
  # A coincidence that would cross the alignment is not taken.
  cross = np.zeros((2, 4), bool)
  cross[0, 2] = cross[1, 0] = True
  pairs, _ = core.align_pairs({'a': cross}, 'state')
  assert len(pairs) == 1


def test_alignment_fills_gaps_with_the_most_valid_partial_pair():
  a = np.zeros((2, 5), bool)
  b = np.zeros((2, 5), bool)
  c = np.zeros((2, 5), bool)
  a[0, 0] = b[0, 0] = c[0, 0] = True  # full
  a[1, 2] = True                       # 1 of 3
  a[1, 3] = b[1, 3] = True             # 2 of 3: preferred
  pairs, valid = core.align_pairs({'a': a, 'b': b, 'c': c}, 'state', min_valid_fraction=0)
  assert pairs.tolist() == [[0, 0], [1, 3]]
  assert valid['c'].tolist() == [True, False]
  # With the default threshold (half the hints) a 1-of-3 pair is dropped.
  a[1, 3] = b[1, 3] = False
  pairs, _ = core.align_pairs({'a': a, 'b': b, 'c': c}, 'state')
  assert pairs.tolist() == [[0, 0]]


def test_prefix_alignment_uses_the_diagonal_only():
  a = np.zeros((3, 4), bool)
  a[0, 0] = a[1, 2] = a[2, 2] = True
  pairs, valid = core.align_pairs({'a': a}, 'prefix')
  assert pairs.tolist() == [[0, 0], [2, 2]]
  with pytest.raises(ValueError):
    core.align_pairs({'a': a}, 'diagonal')


def test_pos_of_new_nodes_respects_array_order_and_segments():
  rng = np.random.default_rng(0)
  orig_pos = np.array([0.1, 0.5, 0.2, 0.7])           # two segments: [0.1, 0.5] | [0.2, 0.7]
  node_map = np.array([1, 2, 4, 6])
  default = np.array([0, .2, .4, .6, 0, .3, .6, .9])  # twin: [0, 4) | [4, 8)
  pos = core.assign_pos(orig_pos, node_map, default, rng)
  assert np.array_equal(pos[node_map], orig_pos)
  assert np.all(np.diff(pos[:4]) >= 0) and np.all(np.diff(pos[4:]) >= 0)
  assert 0 <= pos[0] <= 0.1 and 0.5 <= pos[3] <= 1 and 0.2 <= pos[5] <= 0.7
  with pytest.raises(ValueError, match='increasing'):
    core.check_node_map(np.array([0, 2, 1]), 3, 4)
  with pytest.raises(ValueError, match='range'):
    core.check_node_map(np.array([0, 1, 4]), 3, 4)


def test_insert_nodes():
  twin, node_map = core.insert_nodes(np.array([1., 2., 3.]), np.array([9., 8.]), np.array([3, 0]))
  assert twin.tolist() == [8., 1., 2., 3., 9.]
  assert node_map.tolist() == [1, 2, 3]


def test_rule_helpers_live_beside_the_contract():
  """A rule author imports everything from augment.rule; augment.core still
  re-exports the helpers for older imports."""
  from augment import rule
  for name in ('num_to_add', 'insert_nodes', 'values_above', 'values_below'):
    assert getattr(rule, name).__module__ == 'augment.rule'
    assert getattr(core, name) is getattr(rule, name)


def test_unsupported_and_unknown_algorithms():
  with pytest.raises(ValueError, match='supported: .*insertion_sort'):
    augment.get('no_such_algorithm')
  for name, entry in augment.all_entries().items():
    if entry.rule is None:
      with pytest.raises(augment.UnsupportedAlgorithmError, match='supported'):
        augment.get(name)
      assert name not in augment.supported()
  assert issubclass(augment.UnsupportedAlgorithmError, ValueError)
  assert set(augment.supported()) <= set(augment.all_entries())


def test_malformed_samples_are_rejected():
  alg = 'insertion_sort'
  s = sample_from_args(alg, draw_args(sampler_for(alg, 0), 5, protocol_kwargs(alg, 'train')))
  aug = augment.get(alg)
  with pytest.raises(augment.MalformedSampleError, match='bubble_sort'):
    augment.get('bubble_sort')(s, 0)
  missing = Sample(alg, s.args, {'pos': s.inputs['pos']}, s.hints, s.outputs)
  with pytest.raises(augment.MalformedSampleError, match="input 'key'"):
    aug(missing, 0)
  bad = Sample(alg, s.args, s.inputs, {**s.hints, 'i': s.hints['i'][:, :3]}, s.outputs)
  with pytest.raises(augment.MalformedSampleError, match="'i'"):
    aug(bad, 0)
  with pytest.raises(augment.MalformedSampleError):
    aug({'inputs': {}}, 0)


def _processed_feedback(alg, batch, seed, pred_as_input=True):
  import clrs
  sampler, spec = clrs.build_sampler(alg, num_samples=-1, seed=seed, length=7,
                                     track_max_steps=False)

  def it():
    while True:
      yield sampler.next(batch)
  stream = it()
  if pred_as_input and alg in PRED_AS_INPUT_ALGORITHMS:
    spec, stream = clrs.process_pred_as_input(spec, stream)
  spec, stream = clrs.process_permutations(spec, stream, True)
  stream = clrs.process_random_pos(stream, np.random.RandomState(seed))
  return next(stream)


@pytest.mark.parametrize('alg', ['insertion_sort', 'binary_search', 'task_scheduling'])
def test_from_feedback_round_trip(alg):
  fb = _processed_feedback(alg, 4, seed=1)
  aug = augment.get(alg)
  samples = aug.samples_from_feedback(fb)
  assert len(samples) == 4
  for b, s in enumerate(samples):
    length = int(fb.features.lengths[b])
    assert s.length == length  # time padding dropped
    for dp in fb.features.hints:
      np.testing.assert_allclose(s.hints[dp.name], np.asarray(dp.data)[:length, b])
    for dp in fb.features.inputs:
      np.testing.assert_allclose(s.inputs[dp.name], np.asarray(dp.data)[b])
  out = aug.from_feedback(fb, np.random.default_rng(0))
  assert len(out) == 4 and all(a.original.algorithm == alg for a in out)
  assert all(a.coverage() > 0 for a in out if a.num_transitions)


def test_from_feedback_rejects_unprocessed_or_tampered_batches():
  aug = augment.get('binary_search')
  with pytest.raises(augment.MalformedSampleError, match='process_pred_as_input'):
    aug.from_feedback(_processed_feedback('binary_search', 2, seed=2, pred_as_input=False), 0)
  fb = _processed_feedback('insertion_sort', 2, seed=2)
  hint = [dp for dp in fb.features.hints if dp.name == 'i'][0]
  hint.data[1, 0] = np.roll(hint.data[1, 0], 1)
  with pytest.raises(augment.MalformedSampleError, match="hint 'i'"):
    augment.get('insertion_sort').from_feedback(fb, 0)


def test_report_rows_and_markdown(tmp_path):
  from augment import report
  rows = report.coverage_table(['minimum', 'segments_intersect'], samples=2, sizes=(6,))
  by_alg = {r['algorithm']: r for r in rows}
  assert by_alg['minimum']['coverage_state'] == 1.0
  assert by_alg['minimum']['hint_coverage_state'] == {'min_h': 1.0, 'i': 1.0}
  assert 1 <= by_alg['minimum']['mean_added'] <= 2
  out = tmp_path / 'r.md'
  assert report.main(['--algorithms', 'minimum', '--samples', '2', '--sizes', '6',
                      '--out', str(out)]) == 0
  assert '| minimum | 6 | 100% | 100% |' in out.read_text()
  if 'segments_intersect' in augment.all_entries() and not by_alg['segments_intersect']['has_rule']:
    assert by_alg['segments_intersect']['reason'] in report.to_markdown(rows)


def test_augment_many_and_args_less_samples():
  a = sample_from_args('minimum', draw_args(sampler_for('minimum', 0), 5, protocol_kwargs('minimum', 'train')))
  b = sample_from_args('bubble_sort', [np.array([0.3, 0.1, 0.2])])
  out = augment.augment_many([a, b], np.random.default_rng(0), num_augmentations=2)
  assert [x.original.algorithm for x in out] == ['minimum', 'minimum', 'bubble_sort', 'bubble_sort']
  # Without args the rule works from the rebuilt args: same twin as with them.
  bare = Sample(b.algorithm, (), b.inputs, b.hints, b.outputs)
  x, y = augment.get('bubble_sort')(b, 7), augment.get('bubble_sort')(bare, 7)
  np.testing.assert_array_equal(x.twin.args[0], y.twin.args[0])
  np.testing.assert_array_equal(x.pairs, y.pairs)
