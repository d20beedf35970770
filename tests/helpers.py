"""Small builders shared by the tests."""

import numpy as np

from nar.batching import pad_samples
from nar.sample import draw_args, processed_spec, protocol_kwargs, sample_from_args, sampler_for


def make_samples(algorithm, n, count, seed=0):
  sampler = sampler_for(algorithm, seed)
  return [sample_from_args(algorithm, draw_args(sampler, n, protocol_kwargs(algorithm, 'train')),
                           pos_rng=np.random.RandomState(seed + i)) for i in range(count)]


def make_batch(algorithm, n, count, seed=0, **kw):
  spec = processed_spec(algorithm)
  return pad_samples(make_samples(algorithm, n, count, seed), spec, **kw), spec


# Measured wall-clock rates: the one part of a training record that an
# interruption (or a busy machine) changes.
TIMED_KEYS = ('samples_per_s',)


def without_timings(records):
  """Metric records with the wall-clock measurements dropped, for comparing runs."""
  return [{k: v for k, v in r.items() if k not in TIMED_KEYS} for r in records]
