"""Augmentation rules for the string matchers (naive_string_matcher, kmp_matcher).

Node order in dm-clrs is haystack first, then needle (`probing.strings_id` marks
haystack nodes 0 and needle nodes 1; `key` is `concat(T, P)`).

Both matchers read the haystack strictly left to right and stop at the first
match. Characters appended at the END of the haystack are therefore read only
after every window that lies inside the original haystack has been tried: a
window starting at s <= |T| - |P| reads original characters only. The original
trajectory is hence a prefix of the twin's (alignment t' = t), whatever the
appended characters are, and a new match can only start after the original's
last window. The needle is never touched (KMP's phase 0 runs on it alone).

Appending at the end (rather than inserting) also keeps the original nodes'
inputs intact: an insertion would make the `pred` input of the following
original node point at an added node.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from augment.rule import RuleEntry, TwinArgs, num_to_add, register
from nar.sample import Sample

# dm-clrs strings.py: `_ALPHABET_SIZE`; the sampler draws characters uniformly.
_ALPHABET_SIZE = 4



def append_to_haystack(sample: Sample, rng: np.random.Generator, *,
                       max_added: Optional[int] = None) -> TwinArgs:
  """Appends random characters at the end of the haystack."""
  haystack, needle = (np.asarray(a) for a in sample.args)
  n_t, n_p = haystack.shape[0], needle.shape[0]
  k = num_to_add(n_t + n_p, rng, max_added)
  extra = rng.integers(0, _ALPHABET_SIZE, size=k).astype(haystack.dtype)
  twin_haystack = np.concatenate([haystack, extra])
  # Haystack nodes keep their index; needle nodes move behind the new characters.
  node_map = np.concatenate([np.arange(n_t), n_t + k + np.arange(n_p)])
  return TwinArgs(args=(twin_haystack, needle.copy()), node_map=node_map)


def string_args_from_inputs(inputs: Mapping[str, np.ndarray]) -> tuple[Any, ...]:
  """(first string, second string) from `string` (segment id) and one-hot `key`.

  Shared by the matchers (haystack, needle) and lcs_length (x, y), whose inputs
  are built by the same `probing.strings_*` helpers.
  """
  segment = np.asarray(inputs['string'])
  chars = np.argmax(np.asarray(inputs['key']), axis=-1).astype(np.int64)
  return chars[segment == 0], chars[segment == 1]


_DESCRIPTION = ('appends 1..max(2, n//4) random characters at the end of the '
                'haystack; needle unchanged')
_REASON = ('the matcher stops at the first match, so the appended characters are '
           'never read before the original trajectory ends: every step is valid '
           'at t\' = t')

register(RuleEntry('naive_string_matcher', append_to_haystack,
                   string_args_from_inputs, _DESCRIPTION, _REASON))
register(RuleEntry('kmp_matcher', append_to_haystack,
                   string_args_from_inputs, _DESCRIPTION, _REASON))
