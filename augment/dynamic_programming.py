"""Augmentation rules for dynamic programming (lcs_length, matrix_chain_order,
optimal_bst).

All three fill a table whose cell (i, j) depends only on cells and inputs with
indices inside [i, j] (lcs: the prefixes x[:i+1], y[:j+1]). dm-clrs records one
hint per sweep (lcs, matrix_chain: a synchronous update of the whole table
from the previous one; optimal_bst: one diagonal l = j - i per step), so the
cells of the original index range evolve identically, step for step, when
elements are appended at the END of the inputs: the original trajectory,
restricted to the original nodes, is a prefix of the twin's (t' = t). The twin
may need more sweeps to converge; those extra steps only touch added nodes.

Appending (not prepending) also matters for the edge pointers `s_h`/`root_h`:
cells not yet computed hold 0, i.e. point at node 0, which must stay an
original node.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from augment.rule import RuleEntry, TwinArgs, num_to_add, register
from augment.strings import string_args_from_inputs
from nar.sample import Sample

# dm-clrs LCSSampler: characters in range(4).
_LCS_ALPHABET = 4



def lcs_append(sample: Sample, rng: np.random.Generator, *,
               max_added: Optional[int] = None) -> TwinArgs:
  """Appends random characters at the end of x and/or y (split at random)."""
  x, y = (np.asarray(a) for a in sample.args)
  n_x, n_y = x.shape[0], y.shape[0]
  k = num_to_add(n_x + n_y, rng, max_added)
  k_x = int(rng.binomial(k, 0.5))
  k_y = k - k_x
  twin_x = np.concatenate([x, rng.integers(0, _LCS_ALPHABET, size=k_x).astype(x.dtype)])
  twin_y = np.concatenate([y, rng.integers(0, _LCS_ALPHABET, size=k_y).astype(y.dtype)])
  node_map = np.concatenate([np.arange(n_x), n_x + k_x + np.arange(n_y)])
  return TwinArgs(args=(twin_x, twin_y), node_map=node_map)


def matrix_chain_append(sample: Sample, rng: np.random.Generator, *,
                        max_added: Optional[int] = None) -> TwinArgs:
  """Appends dimensions drawn like the sampler's, U[0, 1), to the chain."""
  (p,) = (np.asarray(a) for a in sample.args)
  n = p.shape[0]
  k = num_to_add(n, rng, max_added)
  twin_p = np.concatenate([p, rng.uniform(0.0, 1.0, size=k).astype(p.dtype)])
  return TwinArgs(args=(twin_p,), node_map=np.arange(n))


def optimal_bst_append(sample: Sample, rng: np.random.Generator, *,
                       max_added: Optional[int] = None) -> TwinArgs:
  """Appends keys (one p and one q value each) at the end.

  The sampler normalises p and q jointly to sum 1. The originals must keep
  their values exactly (the hints `e` and `w` are sums of them), so the twin is
  not renormalised: new values are drawn on the originals' scale (the sampler's
  values are U[0, 1) / sum, mean 1/(2n+1)) and the twin's total is about
  1 + k/(n+1/2). The algorithm needs no normalisation; only the distribution
  of the twin's inputs shifts slightly.

  The last original node carries the padding p = 0 (there are n keys, n + 1
  nodes); in the twin it holds the first new key's p. This is the one
  original-node input the rule changes, unavoidably: the padding is always on
  the last node, and any original node after an added one would shift the
  intervals and `root_h` targets.
  """
  p, q = (np.asarray(a) for a in sample.args)
  n = q.shape[0]  # nodes
  k = num_to_add(n, rng, max_added)
  scale = 2.0 * float(np.mean(np.concatenate([p, q])))
  new = rng.uniform(0.0, 1.0, size=(2, k)) * scale
  twin_p = np.concatenate([p, new[0].astype(p.dtype)])
  twin_q = np.concatenate([q, new[1].astype(q.dtype)])
  return TwinArgs(args=(twin_p, twin_q), node_map=np.arange(n))


def matrix_chain_args_from_inputs(inputs: Mapping[str, np.ndarray]) -> tuple[Any, ...]:
  return (np.asarray(inputs['p'], dtype=np.float64).copy(),)


def optimal_bst_args_from_inputs(inputs: Mapping[str, np.ndarray]) -> tuple[Any, ...]:
  # The p input is padded with a 0 on the last node (n keys on n + 1 nodes).
  p = np.asarray(inputs['p'], dtype=np.float64)[:-1].copy()
  q = np.asarray(inputs['q'], dtype=np.float64).copy()
  return p, q


register(RuleEntry(
    'lcs_length', lcs_append, string_args_from_inputs,
    'appends 1..max(2, n//4) random characters at the ends of x and y (random split)',
    'cells of the original prefixes never read appended characters: every step '
    'is valid at t\' = t'))
register(RuleEntry(
    'matrix_chain_order', matrix_chain_append, matrix_chain_args_from_inputs,
    'appends 1..max(2, n//4) U[0,1) dimensions at the end of the chain',
    'sub-chains of the original range never read appended dimensions: every '
    'step is valid at t\' = t'))
register(RuleEntry(
    'optimal_bst', optimal_bst_append, optimal_bst_args_from_inputs,
    'appends 1..max(2, n//4) keys (p and q on the originals\' scale) at the end; '
    'no renormalisation (twin total about 1 + k/(n+1/2))',
    'intervals of the original range never read appended keys: every step is '
    'valid at t\' = t; the last original node\'s p changes from its padding 0 '
    'to the first new key\'s p'))
