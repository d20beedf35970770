"""Rules for strings, geometry and dynamic programming, checked by re-execution.

Validity is measured here with a small stand-alone checker (restricted hint
comparison, prefix and state alignment), independent of `augment.core`, so
that the rules are guarded even if the core changes; when the core is present
the rules also go through it.
"""

from __future__ import annotations


import numpy as np
import pytest

from augment import dynamic_programming  # noqa: F401  (registers its rules)
from augment import geometry  # noqa: F401
from augment import strings  # noqa: F401
from augment.rule import registry
from nar.sample import (draw_args, processed_spec, protocol_kwargs, sample_from_args,
                        sampler_for)

ALGORITHMS = ('naive_string_matcher', 'kmp_matcher', 'lcs_length',
              'matrix_chain_order', 'optimal_bst', 'segments_intersect',
              'graham_scan', 'jarvis_march')
WITH_RULE = tuple(a for a in ALGORITHMS if a != 'segments_intersect')

# Training size of the protocol: string matchers use total length 20.
TRAIN_N = {'naive_string_matcher': 20, 'kmp_matcher': 20}


def training_sample(alg: str, seed: int, n: int | None = None):
  n = TRAIN_N.get(alg, 16) if n is None else n
  return sample_from_args(
      alg, draw_args(sampler_for(alg, seed), n, protocol_kwargs(alg, 'train')),
      pos_rng=np.random.RandomState(seed))


# ---------------------------------------------------------------------------
# Stand-alone checker.


def _restrict(alg, name, arr, node_map, n_twin, time_axis):
  """`arr` of the twin seen from the original nodes, pointers mapped back
  (a pointer to an added node becomes -1, which no original value equals)."""
  _, loc, typ = processed_spec(alg)[name]
  arr = np.asarray(arr)
  ax = 1 if time_axis else 0
  if loc == 'node':
    arr = np.take(arr, node_map, axis=ax)
  elif loc == 'edge':
    arr = np.take(np.take(arr, node_map, axis=ax), node_map, axis=ax + 1)
  if typ == 'pointer':
    back = np.full(n_twin, -1)
    back[node_map] = np.arange(node_map.shape[0])
    arr = back[arr.astype(int)]
  return arr


def restricted_hints(alg, twin, node_map):
  return {h: _restrict(alg, h, twin.hints[h], node_map, twin.num_nodes, True)
          for h in twin.hints}


def coverage(sample, twin, node_map):
  """Shares of original transitions t -> t+1 with a valid twin pair.

  Returns {'prefix': {'all': c, hint: c, ...}, 'state': {...}}: prefix pairs
  t' = t; state pairs any t' whose two ends agree with the original's (for
  'all': on every hint at once; per hint: on that hint alone).
  """
  restricted = restricted_hints(sample.algorithm, twin, node_map)
  t_len, t2_len = sample.length, twin.length
  n_trans = t_len - 1
  eq = {}  # hint -> [T, T'] agreement of the states
  for h, orig in sample.hints.items():
    a = orig.reshape(t_len, 1, -1)
    b = restricted[h].reshape(1, t2_len, -1)
    eq[h] = np.all(a == b, axis=-1)
  trans = {h: e[:-1, :-1] & e[1:, 1:] for h, e in eq.items()}  # [T-1, T'-1]
  trans_all = np.logical_and.reduce(list(trans.values()))
  out = {'prefix': {}, 'state': {}}
  m = min(n_trans, t2_len - 1)
  for h, tr in list(trans.items()) + [('all', trans_all)]:
    out['prefix'][h] = np.diagonal(tr)[:m].sum() / n_trans
    out['state'][h] = tr.any(axis=1).mean()
  return out


def make_twin(alg, sample, seed, **kw):
  entry = registry()[alg]
  twin_args = entry.rule(sample, np.random.default_rng(seed), **kw)
  twin = sample_from_args(alg, twin_args.args)
  return twin_args, twin


# ---------------------------------------------------------------------------
# Registration and round trips.


def test_all_registered_once():
  for alg in ALGORITHMS:
    entry = registry()[alg]
    assert entry.algorithm == alg
    assert entry.description
    assert (entry.rule is None) == (alg == 'segments_intersect')
  assert 'four points' in registry()['segments_intersect'].reason


def test_segments_intersect_cannot_grow():
  # The reason for having no rule: dm-clrs refuses any other size.
  s = training_sample('segments_intersect', 0)
  xs, ys = s.args
  with pytest.raises(AssertionError):
    sample_from_args('segments_intersect', (np.append(xs, 0.5), np.append(ys, 0.5)))


@pytest.mark.parametrize('alg', ALGORITHMS)
def test_args_from_inputs_round_trip(alg):
  for seed in range(4):
    for n in (4, 7, 16) if alg not in TRAIN_N else (17, 20):
      s = training_sample(alg, seed, n)
      args = registry()[alg].args_from_inputs(s.inputs)
      r = sample_from_args(alg, args, pos=s.inputs['pos'])
      for key, value in s.hints.items():
        np.testing.assert_array_equal(r.hints[key], value, err_msg=f'{alg} {key}')
      for key, value in s.outputs.items():
        np.testing.assert_array_equal(r.outputs[key], value, err_msg=f'{alg} {key}')
      for key, value in s.inputs.items():
        np.testing.assert_array_equal(r.inputs[key], value, err_msg=f'{alg} {key}')


def test_string_node_order_is_haystack_then_needle():
  # The rule relies on it (appended haystack characters push the needle back).
  s = training_sample('kmp_matcher', 1)
  haystack, needle = s.args
  assert haystack.shape[0] > needle.shape[0]
  np.testing.assert_array_equal(
      s.inputs['string'], np.r_[np.zeros(len(haystack)), np.ones(len(needle))])


# ---------------------------------------------------------------------------
# Twins: shape, inputs of the original nodes, validity of the new inputs.


# Original-node inputs a rule may change, with why (see the rule's docstring).
ALLOWED_INPUT_CHANGES = {
    # n keys on n + 1 nodes: the last node's p is padding in the original and a
    # real key in the twin.
    ('optimal_bst', 'p'): lambda n: [n - 1],
}


@pytest.mark.parametrize('alg', WITH_RULE)
def test_twin_keeps_original_inputs(alg):
  for seed in range(6):
    s = training_sample(alg, seed)
    twin_args, twin = make_twin(alg, s, seed)
    node_map = np.asarray(twin_args.node_map)
    n, n2 = s.num_nodes, twin.num_nodes
    assert node_map.shape == (n,)
    assert np.all(np.diff(node_map) > 0)
    k = n2 - n
    assert 1 <= k <= max(2, n // 4)
    for key, value in s.inputs.items():
      if key == 'pos':  # assigned by the core
        continue
      got = _restrict(alg, key, twin.inputs[key], node_map, n2, False)
      keep = np.ones(n, bool)
      keep[ALLOWED_INPUT_CHANGES.get((alg, key), lambda n: [])(n)] = False
      np.testing.assert_array_equal(got[keep], value[keep], err_msg=f'{alg} {key}')


def test_max_added_is_respected():
  for alg in WITH_RULE:
    s = training_sample(alg, 3)
    sizes = {make_twin(alg, s, seed, max_added=1)[1].num_nodes - s.num_nodes
             for seed in range(5)}
    assert sizes == {1}, alg
    sizes = {make_twin(alg, s, seed, max_added=6)[1].num_nodes - s.num_nodes
             for seed in range(40)}
    assert max(sizes) > 2 and max(sizes) <= 6, (alg, sizes)


def test_geometry_twins_stay_in_range():
  for seed in range(8):
    s = training_sample('graham_scan', seed)
    (tx, ty), _ = make_twin('graham_scan', s, seed)[0].args, None
    n = s.num_nodes
    # Inside the sampler's disk, above the original lowest point.
    assert np.all(np.hypot(tx, ty) <= 2.0 + 1e-9)
    assert np.all(ty[n:] > np.min(ty[:n]))
    s = training_sample('jarvis_march', seed)
    twin_args, twin = make_twin('jarvis_march', s, seed)
    # Strictly interior: the hull is the original's.
    np.testing.assert_array_equal(twin.outputs['in_hull'][:n], s.outputs['in_hull'])
    assert not np.any(twin.outputs['in_hull'][n:])


def test_optimal_bst_new_keys_on_the_originals_scale():
  for seed in range(6):
    s = training_sample('optimal_bst', seed)
    (p2, q2), _ = make_twin('optimal_bst', s, seed)[0].args, None
    p, q = s.args
    new = np.r_[p2[len(p):], q2[len(q):]]
    assert np.all(new > 0)
    assert np.all(new < 2.0 * np.mean(np.r_[p, q]))
    assert 1.0 < np.sum(p2) + np.sum(q2) < 1.0 + 2.0 * len(new) / (2 * len(p) + 1)


# ---------------------------------------------------------------------------
# Coverage at training size (regression guards, floors set from measurements).

# alg -> (floor prefix 'all', floor state 'all', floor state per hint except
# the listed hints, which get their own floor).
COVERAGE_FLOORS = {
    'naive_string_matcher': (1.0, 1.0, 1.0, {}),
    'kmp_matcher': (1.0, 1.0, 1.0, {}),
    'lcs_length': (1.0, 1.0, 1.0, {}),
    'matrix_chain_order': (1.0, 1.0, 1.0, {}),
    'optimal_bst': (1.0, 1.0, 1.0, {}),
    'graham_scan': (1.0, 1.0, 1.0, {}),
    'jarvis_march': (0.0, 0.85, 1.0, {'i': 0.85}),
}


@pytest.mark.parametrize('alg', WITH_RULE)
def test_coverage_at_training_size(alg):
  f_prefix, f_state, f_hint, hint_floors = COVERAGE_FLOORS[alg]
  totals = {'prefix': [], 'state': [], 'hints': {}}
  for seed in range(10):
    s = training_sample(alg, seed)
    twin_args, twin = make_twin(alg, s, seed)
    cov = coverage(s, twin, np.asarray(twin_args.node_map))
    totals['prefix'].append(cov['prefix']['all'])
    totals['state'].append(cov['state']['all'])
    for h in s.hints:
      totals['hints'].setdefault(h, []).append(cov['state'][h])
  assert np.mean(totals['prefix']) >= f_prefix - 1e-9, totals['prefix']
  assert np.mean(totals['state']) >= f_state - 1e-9, totals['state']
  for h, values in totals['hints'].items():
    assert np.mean(values) >= hint_floors.get(h, f_hint) - 1e-9, (h, values)


def test_kmp_without_a_match():
  # Arguments not from the sampler: no match, the original scans every window.
  # Appended characters may create a match, but only after the last original
  # window, so every original step stays valid.
  haystack = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
  needle = np.array([1, 0, 0])
  s = sample_from_args('kmp_matcher', (haystack, needle))
  assert np.argmax(s.outputs['match']) == len(haystack)  # the no-match convention
  matched_in_twin = 0
  for seed in range(10):
    twin_args, twin = make_twin('kmp_matcher', s, seed, max_added=3)
    cov = coverage(s, twin, np.asarray(twin_args.node_map))
    assert cov['prefix']['all'] == 1.0
    matched_in_twin += int(np.argmax(twin.outputs['match']) < len(twin_args.args[0]))
  assert matched_in_twin > 0


def test_naive_matcher_cannot_run_without_a_match():
  # dm-clrs's naive_string_matcher forgets `probing.finalize` when nothing
  # matches, so such inputs cannot be executed at all; the rule never creates
  # them (the original's first match survives appending).
  from clrs._src.probing import ProbeError  # pylint: disable=import-outside-toplevel
  with pytest.raises(ProbeError):
    sample_from_args('naive_string_matcher', (np.array([0, 1, 0, 1]), np.array([2])))


def test_checker_detects_a_broken_twin():
  # The checker must be able to fail: prepending a character to the haystack
  # shifts every window, so few steps survive.
  s = training_sample('naive_string_matcher', 2)
  haystack, needle = s.args
  twin = sample_from_args('naive_string_matcher',
                          (np.r_[(haystack[0] + 1) % 4, haystack], needle))
  node_map = np.r_[1 + np.arange(len(haystack)), len(haystack) + 1 + np.arange(len(needle))]
  cov = coverage(s, twin, node_map)
  assert cov['prefix']['all'] < 0.5


# ---------------------------------------------------------------------------
# Through the core, once it exists.


@pytest.mark.parametrize('alg', WITH_RULE)
def test_through_core(alg):
  import augment  # pylint: disable=import-outside-toplevel
  f_prefix, f_state, f_hint, hint_floors = COVERAGE_FLOORS[alg]
  state, prefix, per_hint = [], [], {}
  for seed in range(4):
    s = training_sample(alg, seed)
    aug = augment.get(alg)(s, seed)
    assert aug.num_added >= 1
    state.append(aug.coverage())
    for h in s.hints:
      per_hint.setdefault(h, []).append(aug.coverage(h))
    prefix.append(augment.get(alg)(s, seed, align='prefix').coverage())
  assert np.mean(prefix) >= f_prefix - 1e-9, prefix
  assert np.mean(state) >= f_state - 1e-9, state
  for h, values in per_hint.items():
    assert np.mean(values) >= hint_floors.get(h, f_hint) - 1e-9, (h, values)


def test_graham_thin_wedge_falls_back_to_interior_points():
  # A point almost level with, and left of, the lowest point leaves no room
  # beyond the largest polar angle: the rule must still give a twin on which
  # dm-clrs terminates, with points strictly inside the hull.
  rng = np.random.default_rng(5)
  theta = rng.uniform(0, 2 * np.pi, 12)
  r = 2 * np.sqrt(rng.uniform(0, 1, 12))
  xs, ys = r * np.cos(theta), r * np.sin(theta)
  best = int(np.argmin(ys))
  xs = np.r_[xs, xs[best] - 1.0]
  ys = np.r_[ys, ys[best] + 1e-5]
  s = sample_from_args('graham_scan', (xs, ys))
  twin_args, twin = make_twin('graham_scan', s, 0)
  n = s.num_nodes
  np.testing.assert_array_equal(twin.outputs['in_hull'][:n], s.outputs['in_hull'])
  assert not np.any(twin.outputs['in_hull'][n:])
  assert coverage(s, twin, np.asarray(twin_args.node_map))['state']['best'] == 1.0
