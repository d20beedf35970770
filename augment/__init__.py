"""Causally-equivalent augmentations for Hint-ReLIC (docs/method.md, section 2).

    import augment
    aug = augment.get('insertion_sort')(sample, np.random.default_rng(0))
    aug.pairs, aug.hint_valid, aug.fully_valid

Importing the package registers one `RuleEntry` per algorithm (family modules).
"""

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

from augment import dynamic_programming  # noqa: F401,E402
from augment import geometry  # noqa: F401,E402
from augment import graphs  # noqa: F401,E402
from augment import strings  # noqa: F401,E402

__all__ = [
    'ALIGN_MODES', 'AugmentedSample', 'Augmenter', 'MalformedSampleError', 'RuleEntry',
    'TwinArgs', 'UnsupportedAlgorithmError', 'align_pairs', 'all_entries', 'augment_many',
    'core', 'get', 'register', 'registry', 'samples_from_feedback', 'state_agreement',
    'supported', 'transition_agreement',
]
