"""Rules of the array families (sorting, searching, kadane, greedy): coverage at
training size, where the new nodes go, and that rules leave the sample intact."""

import numpy as np
import pytest

import augment
from nar.sample import draw_args, protocol_kwargs, sample_from_args, sampler_for

ARRAY_ALGORITHMS = ('insertion_sort', 'bubble_sort', 'heapsort', 'quicksort', 'binary_search',
                    'minimum', 'quickselect', 'find_maximum_subarray_kadane',
                    'activity_selector', 'task_scheduling')


def _samples(alg, n=16, count=4, seed=0):
  sampler = sampler_for(alg, seed)
  rng = np.random.RandomState(seed)
  return [sample_from_args(alg, draw_args(sampler, n, protocol_kwargs(alg, 'train')),
                           pos_rng=rng) for _ in range(count)]


def _pooled(augs, hint=None):
  valid = sum(np.count_nonzero(a.fully_valid if hint is None else a.hint_valid[hint])
              for a in augs)
  return valid / sum(a.num_transitions for a in augs)


def _augment(alg, align='state', count=4, **kw):
  aug = augment.get(alg)
  return [aug(s, np.random.default_rng(i), align=align, **kw)
          for i, s in enumerate(_samples(alg, count=count))]


def test_all_array_algorithms_are_registered_with_a_rule():
  assert set(ARRAY_ALGORITHMS) <= set(augment.supported())


# (algorithm, minimum coverage with state alignment, all hints together)
@pytest.mark.parametrize('alg,least', [
    ('insertion_sort', 1.0), ('bubble_sort', 0.8), ('quicksort', 0.95), ('minimum', 1.0),
    ('find_maximum_subarray_kadane', 1.0), ('activity_selector', 1.0),
    ('task_scheduling', 1.0), ('binary_search', 0.5)])
def test_coverage_at_training_size(alg, least):
  assert _pooled(_augment(alg)) >= least


def test_bubble_sort_and_quicksort_need_state_alignment():
  for alg in ('bubble_sort', 'quicksort'):
    assert _pooled(_augment(alg, align='prefix', count=2)) < 0.2


def test_heapsort_build_phase_is_valid_per_hint_but_heap_size_never():
  augs = _augment('heapsort')
  for hint in ('pred_h', 'parent', 'i', 'j', 'largest'):
    assert _pooled(augs, hint) > 0.2
  assert _pooled(augs) == 0.0
  # Each valid pred_h pair lies in the build phase (phase 0) of the original.
  for a in augs:
    ts = a.pairs[a.hint_valid['pred_h'], 0]
    assert np.all(a.original.hints['phase'][ts + 1, 0] == 1)


def test_quickselect_is_valid_per_hint_only():
  augs = _augment('quickselect')
  for hint in ('pred_h', 'p', 'r', 'i', 'j', 'pivot'):
    assert _pooled(augs, hint) > 0.6
  # i_rank and target are divided by the number of nodes.
  assert _pooled(augs, 'target') < 0.3


@pytest.mark.parametrize('alg', ARRAY_ALGORITHMS)
def test_rules_add_few_nodes_and_leave_the_sample_intact(alg):
  entry = augment.all_entries()[alg]
  for s in _samples(alg, n=12, count=3, seed=5):
    before = {k: v.copy() for k, v in s.inputs.items()}
    twin = entry.rule(s, np.random.default_rng(1))
    added = len(np.concatenate([np.atleast_1d(np.asarray(a, dtype=float)) for a in twin.args[-1:]]
                               )) - 12
    assert 1 <= added <= max(2, 12 // 4)
    for k, v in before.items():
      np.testing.assert_array_equal(s.inputs[k], v)


def test_max_added_is_respected():
  for alg in ('insertion_sort', 'bubble_sort', 'activity_selector', 'binary_search'):
    for a in _augment(alg, count=3, max_added=1):
      assert a.num_added == 1
    assert max(a.num_added for a in _augment(alg, count=6, max_added=8)) <= 8


def test_greedy_rules_insert_inside_the_array():
  # Over a few samples, some added activity/task is not at the end.
  for alg in ('activity_selector', 'task_scheduling'):
    maps = [a.node_map for a in _augment(alg, count=6)]
    assert any(m[-1] != len(m) - 1 for m in maps)


@pytest.mark.parametrize('alg', ARRAY_ALGORITHMS)
def test_args_from_inputs_round_trip(alg):
  entry = augment.all_entries()[alg]
  for s in _samples(alg, n=9, count=2, seed=4):
    again = sample_from_args(alg, entry.args_from_inputs(s.inputs), pos=s.inputs['pos'])
    for group in ('hints', 'outputs', 'inputs'):
      for k, v in getattr(s, group).items():
        np.testing.assert_allclose(getattr(again, group)[k], v, err_msg=f'{alg} {k}')
