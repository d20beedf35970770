"""Causally-equivalent augmentations for Hint-ReLIC (METHOD.md section 2).

    import augment
    aug = augment.get('insertion_sort')(sample, np.random.default_rng(0))
    aug.pairs, aug.hint_valid, aug.fully_valid

Importing the package registers one `RuleEntry` per algorithm (family modules).
"""

import importlib as _importlib

from augment import core
from augment.core import (ALIGN_MODES, AugmentedSample, Augmenter, MalformedSampleError,
                          UnsupportedAlgorithmError, align_pairs, all_entries, augment_many,
                          get, samples_from_feedback, state_agreement, supported,
                          transition_agreement)
from augment.rule import RuleEntry, TwinArgs, register, registry

from augment import divide_and_conquer  # noqa: F401,E402
from augment import greedy  # noqa: F401,E402
from augment import searching  # noqa: F401,E402
from augment import sorting  # noqa: F401,E402

# These family modules are written by other people at the same time and may not
# exist yet in every checkout. Only the module's own absence is tolerated (a
# ModuleNotFoundError raised *inside* it for another name still propagates).
# TODO(lead): import them plainly once all four are committed.
for _family in ('graphs', 'strings', 'geometry', 'dynamic_programming'):
  try:
    _importlib.import_module(f'augment.{_family}')
  except ModuleNotFoundError as _e:
    if _e.name != f'augment.{_family}':
      raise

__all__ = [
    'ALIGN_MODES', 'AugmentedSample', 'Augmenter', 'MalformedSampleError', 'RuleEntry',
    'TwinArgs', 'UnsupportedAlgorithmError', 'align_pairs', 'all_entries', 'augment_many',
    'core', 'get', 'register', 'registry', 'samples_from_feedback', 'state_agreement',
    'supported', 'transition_agreement',
]
