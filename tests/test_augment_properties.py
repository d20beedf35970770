"""Property tests over every algorithm registered with a rule at test time
(other people's families included): what the core marks valid is checked by an
independent, deliberately naive re-implementation of the comparison."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import augment
from nar.sample import (STRING_MATCHERS, draw_args, processed_spec, protocol_kwargs, sample_from_args,
                        sampler_for)

SUPPORTED = augment.supported()
# Inputs derived from the array order, which adding nodes legitimately changes
# (`pos` is checked separately: originals keep theirs).
ORDER_INPUTS = ('pos', 'pred')
# Inputs whose value on an original node is padding, not data, and which a
# rule documents it must fill: optimal_bst has n keys on n + 1 nodes, the last
# node's `p` is 0, and appended keys put the first new key's p there.
PADDING_INPUTS = {('optimal_bst', 'p'): -1}
# Trajectories longer than this are redrawn at n = 16 to keep the test cheap.
MAX_STEPS = 400
# The naive check runs on at most this many pairs per example (it is slow).
MAX_CHECKED_PAIRS = 10


def _naive_equal(a, b, is_float):
  if is_float:
    return abs(float(a) - float(b)) <= 1e-9 + 1e-7 * abs(float(b))
  return float(a) == float(b)


def _naive_state_equal(orig, twin, node_map, name, t, tt):
  """One hint, one original state t and one twin state tt, node by node."""
  _, loc, typ = processed_spec(orig.algorithm)[name]
  o, w = np.asarray(orig.hints[name][t]), np.asarray(twin.hints[name][tt])
  pointer = typ in ('pointer', 'permutation_pointer')
  is_float = typ == 'scalar' and (o.dtype.kind == 'f' or w.dtype.kind == 'f')
  n = len(node_map)
  if loc == 'graph':
    return o.shape == w.shape and all(
        _naive_equal(x, y, is_float) for x, y in zip(o.ravel(), w.ravel()))
  if loc == 'node':
    for i in range(n):
      if pointer:
        if int(round(float(w[node_map[i]]))) != node_map[int(round(float(o[i])))]:
          return False
      elif not all(_naive_equal(x, y, is_float)
                   for x, y in zip(np.ravel(o[i]), np.ravel(w[node_map[i]]))):
        return False
    return True
  for i in range(n):
    for j in range(n):
      x, y = o[i, j], w[node_map[i], node_map[j]]
      if pointer:
        if int(round(float(y))) != node_map[int(round(float(x)))]:
          return False
      elif not all(_naive_equal(p, q, is_float) for p, q in zip(np.ravel(x), np.ravel(y))):
        return False
  return True


def _make_sample(alg, size, seed):
  if alg in STRING_MATCHERS:
    size = max(size, 20)  # the sampler embeds a needle of up to 8 characters twice
  sampler = sampler_for(alg, seed)
  s = sample_from_args(alg, draw_args(sampler, size, protocol_kwargs(alg, 'train')),
                       pos_rng=np.random.RandomState(seed))
  if s.length > MAX_STEPS:
    s = sample_from_args(alg, draw_args(sampler, 16, protocol_kwargs(alg, 'train')),
                         pos_rng=np.random.RandomState(seed))
  return s


# Mostly training sizes; 64 (the OOD test size) rarely.
SIZES = st.one_of(st.integers(4, 16), st.integers(4, 16), st.integers(4, 16),
                  st.sampled_from([24, 64]))


@pytest.mark.skipif(not SUPPORTED, reason='no rule registered')
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(alg=st.sampled_from(SUPPORTED), size=SIZES, seed=st.integers(0, 10_000),
       align=st.sampled_from(['state', 'prefix']))
def test_valid_pairs_are_truly_equivalent(alg, size, seed, align):
  s = _make_sample(alg, size, seed)
  a = augment.get(alg)(s, np.random.default_rng(seed), align=align)
  m = a.node_map
  hints = processed_spec(alg)
  hint_names = [k for k, v in hints.items() if v[0] == 'hint']
  assert sorted(a.hint_valid) == sorted(hint_names)

  # Pairs: in range, one per original transition, strictly increasing.
  p = a.pairs
  assert p.ndim == 2 and p.shape[1] == 2
  assert np.all((p[:, 0] >= 0) & (p[:, 0] < s.length - 1))
  assert np.all((p[:, 1] >= 0) & (p[:, 1] < a.twin.length - 1))
  assert np.all(np.diff(p[:, 0]) > 0) and np.all(np.diff(p[:, 1]) > 0)
  if align == 'prefix':
    assert np.array_equal(p[:, 0], p[:, 1])
  assert np.all(np.any(np.stack(list(a.hint_valid.values())), axis=0)) if len(p) else True

  # Every verdict, valid or not, agrees with the naive comparison at both ends.
  checked = np.unique(np.linspace(0, len(p) - 1, MAX_CHECKED_PAIRS).astype(int)) if len(p) else []
  for k in checked:
    t, tt = p[k]
    for name in hint_names:
      truth = (_naive_state_equal(s, a.twin, m, name, t, tt) and
               _naive_state_equal(s, a.twin, m, name, t + 1, tt + 1))
      assert bool(a.hint_valid[name][k]) == truth, (alg, name, t, tt)
    assert a.fully_valid[k] == all(a.hint_valid[h][k] for h in hint_names)

  # The twin is the re-execution of its own args (nothing patched in).
  again = sample_from_args(alg, a.twin.args, pos=a.twin.inputs['pos'])
  for name in hint_names:
    np.testing.assert_allclose(again.hints[name], a.twin.hints[name])

  # Original nodes keep their input data and their pos.
  n, n2 = s.num_nodes, a.twin.num_nodes
  assert n2 > n and np.all(np.diff(m) > 0) and m[-1] < n2
  for name, (stage, loc, _) in hints.items():
    if stage != 'input' or name in ORDER_INPUTS:
      continue
    o, w = np.asarray(s.inputs[name]), np.asarray(a.twin.inputs[name])
    if loc == 'node':
      w = w[m]
      if (alg, name) in PADDING_INPUTS:
        keep = np.ones(n, bool)
        keep[PADDING_INPUTS[(alg, name)]] = False
        o, w = o[keep], w[keep]
    elif loc == 'edge':
      w = w[np.ix_(m, m)]
    np.testing.assert_allclose(w, o, err_msg=f'{alg} input {name}')
  np.testing.assert_array_equal(a.twin.inputs['pos'][m], s.inputs['pos'])


@settings(max_examples=8, deadline=None, derandomize=True)
@given(alg=st.sampled_from(SUPPORTED or ['insertion_sort']), seed=st.integers(0, 10_000))
def test_same_seed_gives_the_same_augmentation(alg, seed):
  s = _make_sample(alg, 8, seed)
  aug = augment.get(alg)
  x, y = aug(s, np.random.default_rng(seed)), aug(s, np.random.default_rng(seed))
  assert np.array_equal(x.node_map, y.node_map) and np.array_equal(x.pairs, y.pairs)
  for k in x.twin.inputs:
    np.testing.assert_array_equal(x.twin.inputs[k], y.twin.inputs[k])


@settings(max_examples=10, deadline=None, derandomize=True)
@given(name=st.text(min_size=1, max_size=12))
def test_unsupported_names_raise_value_error(name):
  if name in SUPPORTED:
    return
  with pytest.raises(ValueError, match='supported'):
    augment.get(name)
