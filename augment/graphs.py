"""Augmentation rules for the 12 CLRS graph algorithms.

All of dm-clrs's graph algorithms break ties by node index, so new nodes get
indices above the originals: a new node is scanned, chosen or merged after any
original candidate. The rules append them (node_map = arange(n)), except in the
DFS-based algorithms, whose scan variable `v` is left at the LAST index after a
full scan: there the new nodes go just before the last original node, which
stays last (node_map = [0..n-2, n'-1]). What each rule must then control is
WHEN the new nodes take part:

* DFS-like searches (dfs, topological_sort, articulation_points, bridges,
  strongly_connected_components) stamp absolute times (`d`, `f`, `time`) and
  topological links, so visiting a new node in the middle of the search changes
  every later frame. New nodes are therefore only *sources* (out-edges to
  originals, which are all black when the outer loop reaches the new roots) or
  children of the LAST root: that root finishes last, so the detour costs only
  the original's final transition.
* Parallel / priority algorithms (bfs, bellman_ford, dijkstra, mst_prim,
  mst_kruskal, dag_shortest_paths) tolerate new nodes during the run as long as
  they never offer an original a shorter / earlier / lighter alternative;
  the rules derive the needed bound (BFS levels, hop-bounded distances,
  extraction keys, Dijkstra distances, reachability from `s`) from the
  original graph.
* floyd_warshall relaxes through intermediate node k = 0, 1, ...: appended
  nodes are intermediates only after every original one, whatever their edges.

The twin keeps the sampler's kind of input: symmetric for the undirected
samplers, acyclic for topological_sort / dag_shortest_paths, weights in the
sampler's range (sqrt(u1 u2 + 1e-3) for undirected weighted graphs, uniform
(0, 1] for the DAG). Validity is still decided by re-execution in the core;
these rules only aim to make it likely.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional

import numpy as np

from augment.rule import RuleEntry, TwinArgs, register
from nar.sample import Sample

# Range of undirected sampler weights: sqrt(u1 * u2 + 1e-3), u ~ U[0, 1).
W_LO = float(np.sqrt(1e-3))
W_HI = float(np.sqrt(1.0 + 1e-3))
# Weighted comparisons in dm-clrs are strict (`<`): a margin keeps a
# mathematically strict inequality strict after floating-point rounding.
_MARGIN = 1e-6


# ---------------------------------------------------------------- helpers

def _num_added(n: int, rng: np.random.Generator, max_added: Optional[int]) -> int:
  # Few nodes: the network runs on the twin as well.
  hi = max(2, n // 4) if max_added is None else max(1, int(max_added))
  return int(rng.integers(1, hi + 1))


def _graph(sample: Sample) -> tuple[np.ndarray, Optional[int]]:
  """(A, s) of a sample; s is None for the algorithms without a source."""
  # The core rebuilds `args` with `args_from_inputs` for samples from a batch.
  args = sample.args
  A = np.asarray(args[0])
  s = int(args[1]) if len(args) > 1 else None
  return A, s


def _grow(A: np.ndarray, k: int) -> np.ndarray:
  n = A.shape[0]
  B = np.zeros((n + k, n + k), dtype=A.dtype)
  B[:n, :n] = A
  return B


def _density(A: np.ndarray) -> float:
  """Edge probability of the original graph (off-diagonal), so that the new
  nodes look like nodes of the same Erdos-Renyi draw; at least one expected
  edge per node so that sparse samples still get connected twins."""
  n = A.shape[0]
  if n < 2:
    return 0.5
  off = (A != 0) & ~np.eye(n, dtype=bool)
  return float(np.clip(off.sum() / (n * (n - 1)), 1.0 / n, 0.9))


def _undirected_weight(rng: np.random.Generator, size=None):
  # The undirected samplers' weight distribution (`_random_er_graph`).
  return np.sqrt(rng.random(size) * rng.random(size) + 1e-3)


def _above(rng: np.random.Generator, lo: float, size=None):
  """Weights in (lo, W_HI] (strictly above lo), as heavy as the sampler allows."""
  lo = max(lo, W_LO)
  # Sampler weights are < W_HI, so the interval is never empty for its graphs.
  hi = W_HI if lo < W_HI else lo + 1e-3
  return lo + (hi - lo) * (1.0 - rng.random(size))


def _hop_levels(A: np.ndarray, s: int) -> np.ndarray:
  """BFS hop distance from s along A[u, v] != 0 (inf when unreachable)."""
  n = A.shape[0]
  adj = A != 0
  level = np.full(n, np.inf)
  level[s] = 0
  frontier = np.zeros(n, dtype=bool)
  frontier[s] = True
  d = 0
  while frontier.any():
    d += 1
    nxt = adj[frontier].any(axis=0) & np.isinf(level)
    level[nxt] = d
    frontier = nxt
  return level


def _reachable(A: np.ndarray, s: int) -> np.ndarray:
  return np.isfinite(_hop_levels(A, s))


def _last_root(A: np.ndarray) -> int:
  """Root of the last tree of the DFS forest (outer loop in index order): the
  node that finishes last. It has no in-edge from an earlier tree."""
  n = A.shape[0]
  seen = np.zeros(n, dtype=bool)
  root = 0
  for s in range(n):
    if not seen[s]:
      root = s
      seen |= _reachable(A, s)
  return root


def _sym(B: np.ndarray, i: int, j: int, w) -> None:
  B[i, j] = w
  B[j, i] = w


# ---------------------------------------------------------------- args from inputs

def _args_A(inputs: Mapping[str, np.ndarray]) -> tuple[Any, ...]:
  # `A` is the raw (weighted) adjacency the algorithm was called with.
  return (np.array(inputs['A'], copy=True),)


def _args_A_s(inputs: Mapping[str, np.ndarray]) -> tuple[Any, ...]:
  return (np.array(inputs['A'], copy=True), int(np.argmax(inputs['s'])))


# ---------------------------------------------------------------- bfs

def bfs_rule(sample: Sample, rng: np.random.Generator, *,
             max_added: Optional[int] = None) -> TwinArgs:
  """Each new node w gets an anchor level d (the BFS level of a random original)
  and edges only to originals of level d..d+2 (d itself included): w is reached
  at step d+1 and any path through w has length >= d+2, so no original is
  reached earlier; ties go to originals, whose indices are smaller. New nodes of
  anchor levels at most 1 apart may be joined. Unreachable anchors keep w (and
  its unreachable neighbours) unreachable."""
  A, s = _graph(sample)
  n = A.shape[0]
  k = _num_added(n, rng, max_added)
  p = _density(A)
  level = _hop_levels(A, s)
  B = _grow(A, k)
  anchor_level = np.empty(k)
  for j in range(k):
    w = n + j
    a = int(rng.integers(n))
    d = level[a]
    anchor_level[j] = d
    if np.isinf(d):
      ok = np.isinf(level)
    else:
      ok = (level >= d) & (level <= d + 2)
    extra = ok & (rng.random(n) < p)
    extra[a] = True
    for v in np.flatnonzero(extra):
      _sym(B, w, int(v), 1)
  for i in range(k):
    for j in range(i + 1, k):
      li, lj = anchor_level[i], anchor_level[j]
      same = (np.isinf(li) and np.isinf(lj)) or abs(li - lj) <= 1
      if same and rng.random() < p:
        _sym(B, n + i, n + j, 1)
  return TwinArgs(args=(B, s), node_map=np.arange(n))


# ---------------------------------------------------------------- DFS family
#
# The DFS loops leave their scan variable at the LAST index when a scan finds no
# white neighbour, and the `v` hint shows it. New nodes therefore go just BEFORE
# the last original node L = n-1 (node_map = [0..n-2, n'-1]), so that L stays
# the last index. No original but the last root points to them, so the scans of
# the originals are unchanged. The new nodes become DFS roots after every
# original root except L itself: when L is a root (then nothing white is left
# for it to reach), the new trees come before it and L's own three frames are
# shifted in time.


def _insert_before_last(A: np.ndarray, k: int, dtype=None):
  """Twin adjacency with k empty new nodes at indices n-1..n+k-2."""
  n = A.shape[0]
  node_map = np.concatenate([np.arange(n - 1), [n + k - 1]])
  B = np.zeros((n + k, n + k), dtype=A.dtype if dtype is None else dtype)
  B[np.ix_(node_map, node_map)] = A
  return B, node_map, np.arange(n - 1, n - 1 + k)


class _LastRootTwin(NamedTuple):
  """Shared start of the DFS-family rules: the original graph A, its twin B with
  k empty new nodes placed before the last original node L, the last DFS root r."""
  A: np.ndarray
  B: np.ndarray
  node_map: np.ndarray
  new: np.ndarray
  n: int
  k: int
  p: float
  r: int
  last: int


def _last_root_twin(sample: Sample, rng: np.random.Generator,
                    max_added: Optional[int]) -> _LastRootTwin:
  A, _ = _graph(sample)
  n = A.shape[0]
  k = _num_added(n, rng, max_added)
  B, node_map, new = _insert_before_last(A, k)
  return _LastRootTwin(A, B, node_map, new, n, k, _density(A), _last_root(A), n - 1)


def _sources_and_last_root(sample: Sample, rng: np.random.Generator, *,
                           max_added: Optional[int], p_last: float,
                           acyclic: bool) -> TwinArgs:
  """Directed DFS family: new nodes point to originals (never the reverse, so
  the search over originals is untouched and the new roots find only black
  neighbours); with probability p_last a new node is also a child of the last
  root r (visited just before r finishes, the original's final step)."""
  A, B, node_map, new, n, k, p, r, last = _last_root_twin(sample, rng, max_added)
  # r scans the new nodes before L: only when r has no edge to L is the detour
  # at the very end of the original search.
  attach = p_last > 0 and r != last and A[r, last] == 0
  # A new root before a white L would visit it first; in a DAG, r -> w -> r
  # would close a cycle.
  keep = np.ones(n, dtype=bool)
  keep[last] = r != last
  keep[r] &= not (attach and acyclic)
  targets = node_map[keep]
  for j, w in enumerate(new):
    if targets.size:
      out = rng.random(targets.size) < p
      if not out.any():
        out[rng.integers(targets.size)] = True
      B[w, targets[out]] = 1
    for i, w2 in enumerate(new):
      # Forward new->new edges only keep a DAG acyclic (r has no original
      # in-edge, nor one from a new node, so r -> w closes no cycle either).
      if i != j and (i > j or not acyclic) and rng.random() < p:
        B[w, w2] = 1
  if attach:
    B[node_map[r], new] = (rng.random(k) < p_last).astype(B.dtype)
  return TwinArgs(args=(B,), node_map=node_map)


def dfs_rule(sample: Sample, rng: np.random.Generator, *,
             max_added: Optional[int] = None, p_last: float = 0.5) -> TwinArgs:
  return _sources_and_last_root(sample, rng, max_added=max_added, p_last=p_last,
                                acyclic=False)


def topological_sort_rule(sample: Sample, rng: np.random.Generator, *,
                          max_added: Optional[int] = None,
                          p_last: float = 0.5) -> TwinArgs:
  return _sources_and_last_root(sample, rng, max_added=max_added, p_last=p_last,
                                acyclic=True)


def scc_rule(sample: Sample, rng: np.random.Generator, *,
             max_added: Optional[int] = None) -> TwinArgs:
  # No last-root child here: in Kosaraju's second pass the new nodes (largest
  # finishing times) come first anyway, so that pass is shifted in time either way.
  return _sources_and_last_root(sample, rng, max_added=max_added, p_last=0.0,
                                acyclic=False)


def undirected_last_root_rule(sample: Sample, rng: np.random.Generator, *,
                              max_added: Optional[int] = None,
                              p_last: float = 0.5) -> TwinArgs:
  """Undirected DFS family (articulation_points, bridges): an edge to any
  original but the last root would be followed mid-search (shifting every later
  time stamp), so new nodes form their own component(s), each new node joined
  to the last root with probability p_last."""
  A, B, node_map, new, n, k, p, r, last = _last_root_twin(sample, rng, max_added)
  # If L is the last root it is isolated and comes after the new nodes: joining
  # it would pull it into a new tree.
  attach = p_last > 0 and r != last and A[r, last] == 0
  for j, w in enumerate(new):
    if attach and rng.random() < p_last:
      _sym(B, node_map[r], w, 1)
    for w2 in new[j + 1:]:
      if rng.random() < p:
        _sym(B, w, w2, 1)
  return TwinArgs(args=(B,), node_map=node_map)


# ---------------------------------------------------------------- MSTs

def _heavy_edges(A: np.ndarray, rng: np.random.Generator, k: int,
                 floor: float, free: np.ndarray) -> np.ndarray:
  """Undirected weighted twin: each new node gets edges to originals with the
  sample's density (at least one); edges to originals where `free` is False,
  and all new-new edges unless they involve only free targets, weigh more than
  `floor`. `free[v]`: edges to v may take any weight."""
  n = A.shape[0]
  p = _density(A)
  B = _grow(A.astype(float), k)
  for j in range(k):
    w = n + j
    nbrs = rng.random(n) < p
    if not nbrs.any():
      nbrs[rng.integers(n)] = True
    for v in np.flatnonzero(nbrs):
      wt = _undirected_weight(rng) if free[v] else _above(rng, floor)
      _sym(B, w, int(v), wt)
    for i in range(j + 1, k):
      if rng.random() < p:
        _sym(B, w, n + i, _above(rng, floor))
  return B


def mst_kruskal_rule(sample: Sample, rng: np.random.Generator, *,
                     max_added: Optional[int] = None) -> TwinArgs:
  """Edges of new nodes weigh more than every original edge: Kruskal sorts them
  after all original edges, so the union-find run on originals is a prefix."""
  A, _ = _graph(sample)
  n = A.shape[0]
  k = _num_added(n, rng, max_added)
  B = _heavy_edges(A, rng, k, float(A.max(initial=0.0)), np.zeros(n, dtype=bool))
  return TwinArgs(args=(B,), node_map=np.arange(n))


def _prim_keys(A: np.ndarray, s: int) -> np.ndarray:
  """Key of every node when Prim extracts it (0 for s, nan if never)."""
  n = A.shape[0]
  key = np.full(n, np.inf)
  key[s] = 0.0
  done = np.zeros(n, dtype=bool)
  out = np.full(n, np.nan)
  while True:
    cand = np.where(done, np.inf, key)
    u = int(np.argmin(cand))
    if not np.isfinite(cand[u]):
      return out
    done[u] = True
    out[u] = key[u]
    nb = (A[u] != 0) & ~done
    key[nb] = np.minimum(key[nb], A[u, nb])


def mst_prim_rule(sample: Sample, rng: np.random.Generator, *,
                  max_added: Optional[int] = None) -> TwinArgs:
  """New nodes enter Prim's queue during the run (their key is set by an
  extracted original) but their edges to the source's component weigh more
  than every key Prim extracts there, so they leave the queue only after all
  reachable originals; edges to unreachable originals may weigh anything."""
  A, s = _graph(sample)
  n = A.shape[0]
  k = _num_added(n, rng, max_added)
  keys = _prim_keys(A, s)
  reached = ~np.isnan(keys)
  B = _heavy_edges(A, rng, k, float(np.nanmax(keys)), ~reached)
  return TwinArgs(args=(B, s), node_map=np.arange(n))


# ---------------------------------------------------------------- shortest paths

def _dijkstra_dist(A: np.ndarray, s: int) -> np.ndarray:
  n = A.shape[0]
  d = np.full(n, np.inf)
  d[s] = 0.0
  done = np.zeros(n, dtype=bool)
  while True:
    cand = np.where(done, np.inf, d)
    u = int(np.argmin(cand))
    if not np.isfinite(cand[u]):
      return d
    done[u] = True
    nb = (A[u] != 0) & ~done
    d[nb] = np.minimum(d[nb], d[u] + A[u, nb])


def dijkstra_rule(sample: Sample, rng: np.random.Generator, *,
                  max_added: Optional[int] = None) -> TwinArgs:
  """New nodes hang off originals whose distance d[a] is within one maximal
  weight of the farthest reachable distance D, with weight > D - d[a]: they
  enter the queue during the run but are extracted after every reachable
  original (extracting them earlier would insert a frame mid-run). Edges to
  unreachable originals, and between new nodes, may weigh anything."""
  A, s = _graph(sample)
  n = A.shape[0]
  k = _num_added(n, rng, max_added)
  p = _density(A)
  dist = _dijkstra_dist(A, s)
  reached = np.isfinite(dist)
  far = float(dist[reached].max())
  ok = ~reached | (dist + W_HI > far + 2 * _MARGIN)
  B = _grow(A.astype(float), k)
  for j in range(k):
    w = n + j
    nbrs = ok & (rng.random(n) < p)
    if not nbrs.any():
      nbrs[rng.choice(np.flatnonzero(ok))] = True
    for v in np.flatnonzero(nbrs):
      wt = (_undirected_weight(rng) if not reached[v]
            else _above(rng, far - dist[v] + _MARGIN))
      _sym(B, w, int(v), wt)
    for i in range(j + 1, k):
      if rng.random() < p:
        _sym(B, w, n + i, _undirected_weight(rng))
  return TwinArgs(args=(B, s), node_map=np.arange(n))


def _bellman_ford_rounds(A: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray]:
  """(d, msk) after each round of dm-clrs's Bellman-Ford, [R, n], round 0 first;
  the last row is repeated as the fixed point."""
  n = A.shape[0]
  edge = A != 0
  d = np.zeros(n)
  msk = np.zeros(n, dtype=bool)
  msk[s] = True
  ds, ms = [d.copy()], [msk.copy()]
  while True:
    cand = np.where(msk[:, None] & edge, d[:, None] + A, np.inf).min(axis=0)
    new_msk = msk | np.isfinite(cand)
    new_d = np.where(msk, np.minimum(d, cand), np.where(new_msk, cand, 0.0))
    done = np.array_equal(new_d, d)
    d, msk = new_d, new_msk
    ds.append(d.copy())
    ms.append(msk.copy())
    if done:
      return np.array(ds), np.array(ms)


def _bf_two_hop_ok(ds: np.ndarray, ms: np.ndarray, nodes: np.ndarray,
                   wts: np.ndarray) -> np.ndarray:
  """ok[a, b]: the two-hop path nodes[a] - w - nodes[b] (weights wts[a], wts[b])
  never improves or hastens nodes[b] in any round: round i offers it
  d_i[x] + wx + wy at round i + 2."""
  R = ds.shape[0]
  j = np.minimum(np.arange(R) + 2, R - 1)
  dx = ds[:, nodes] + wts  # [R, c]: value of w one round after x
  d_at = ds[j][:, nodes]  # [R, c]: y's value two rounds later
  m_at = ms[j][:, nodes]
  ok = m_at[:, None, :] & (dx[:, :, None] + wts[None, None, :] > d_at[:, None, :] + _MARGIN)
  return np.all(ok | ~ms[:, nodes][:, :, None], axis=0)


def bellman_ford_rule(sample: Sample, rng: np.random.Generator, *,
                      max_added: Optional[int] = None) -> TwinArgs:
  """New nodes form pendant trees: each one hangs off a random original (any
  weight: a path through a pendant node returns where it came from) or off an
  earlier new node. An anchored node may get further original neighbours when
  no two-hop detour through it beats the original's hop-bounded distances
  (checked against the original's rounds)."""
  A, s = _graph(sample)
  n = A.shape[0]
  k = _num_added(n, rng, max_added)
  p = _density(A)
  ds, ms = _bellman_ford_rounds(A, s)
  B = _grow(A.astype(float), k)
  for j in range(k):
    w = n + j
    if j > 0 and rng.random() < 0.3:
      _sym(B, w, n + int(rng.integers(j)), _undirected_weight(rng))
      continue
    a = int(rng.integers(n))
    others = np.flatnonzero(rng.random(n) < p)
    cand = np.concatenate([[a], others[others != a]])
    wts = _undirected_weight(rng, cand.size)
    ok = _bf_two_hop_ok(ds, ms, cand, wts)
    ok &= ok.T
    chosen = [0]  # the anchor: a single neighbour is always safe
    for c in range(1, cand.size):
      if ok[c, chosen].all():
        chosen.append(c)
    for c in chosen:
      _sym(B, w, int(cand[c]), wts[c])
  return TwinArgs(args=(B, s), node_map=np.arange(n))


def _topo_rank(A: np.ndarray) -> np.ndarray:
  """Rank of each node in some topological order of the DAG A (Kahn)."""
  n = A.shape[0]
  edge = (A != 0) & ~np.eye(n, dtype=bool)
  indeg = edge.sum(axis=0)
  rank = np.full(n, -1)
  ready = list(np.flatnonzero(indeg == 0))
  r = 0
  while ready:
    u = ready.pop()
    rank[u] = r
    r += 1
    for v in np.flatnonzero(edge[u]):
      indeg[v] -= 1
      if indeg[v] == 0:
        ready.append(v)
  if (rank < 0).any():
    raise ValueError('dag_shortest_paths / topological_sort input has a cycle')
  return rank


def dag_shortest_paths_rule(sample: Sample, rng: np.random.Generator, *,
                            max_added: Optional[int] = None) -> TwinArgs:
  """dm-clrs's DAG shortest paths only searches from s, so new nodes that s
  cannot reach change nothing: a new node takes a slot in a topological order
  of the originals and gets in-edges from earlier originals that s does not
  reach and out-edges to later originals (acyclic by construction). Like the
  DFS family's, the new nodes go before the last original (the `v` hint)."""
  A, s = _graph(sample)
  n = A.shape[0]
  k = _num_added(n, rng, max_added)
  p = _density(A)
  rank = _topo_rank(A)
  unreached = ~_reachable(A, s)
  slot = rng.integers(0, n + 1, size=k) - 0.5  # between two ranks
  B, node_map, new = _insert_before_last(A, k, dtype=float)
  for j, w in enumerate(new):
    out = node_map[(rank > slot[j]) & (rng.random(n) < p)]
    inn = node_map[(rank < slot[j]) & unreached & (rng.random(n) < p)]
    B[w, out] = 1.0 - rng.random(out.size)  # the sampler's U(0, 1), never 0
    B[inn, w] = 1.0 - rng.random(inn.size)
    for i, w2 in enumerate(new):
      # New-new edges follow the slots (ties broken by index): still acyclic.
      if (slot[i], i) > (slot[j], j) and rng.random() < p:
        B[w, w2] = 1.0 - rng.random()
  return TwinArgs(args=(B, int(node_map[s])), node_map=node_map)


def floyd_warshall_rule(sample: Sample, rng: np.random.Generator, *,
                        max_added: Optional[int] = None) -> TwinArgs:
  """Appended nodes are intermediates k only after every original, and the
  original x original distances at step k use intermediates < k only: any
  edges, any weights."""
  A, _ = _graph(sample)
  n = A.shape[0]
  k = _num_added(n, rng, max_added)
  p = _density(A)
  B = _grow(A.astype(float), k)
  for j in range(k):
    w = n + j
    nbrs = rng.random(n + j) < p
    for v in np.flatnonzero(nbrs):
      _sym(B, w, int(v), _undirected_weight(rng))
  return TwinArgs(args=(B,), node_map=np.arange(n))


# ---------------------------------------------------------------- registry

_DFS_REASON = ('A new node reached mid-search shifts every later time stamp, '
               'so new nodes are sources or children of the last root only; '
               'that child costs the final transition.')

_ENTRIES = (
    RuleEntry('bfs', bfs_rule, _args_A_s,
              'new nodes joined to originals of BFS level d..d+2 (d = a random '
              'original\'s level), new-new edges between close levels',
              'none known: every original step stays valid'),
    RuleEntry('dfs', dfs_rule, _args_A,
              'new nodes with out-edges to originals (and new nodes); each a '
              'child of the last DFS root with prob. 1/2', _DFS_REASON),
    RuleEntry('topological_sort', topological_sort_rule, _args_A,
              'new source nodes pointing to originals and later new nodes; each '
              'a child of the last DFS root (no in-edges) with prob. 1/2',
              _DFS_REASON),
    RuleEntry('articulation_points', undirected_last_root_rule, _args_A,
              'new nodes form their own component(s), each joined to the last '
              'DFS root with prob. 1/2', _DFS_REASON),
    RuleEntry('bridges', undirected_last_root_rule, _args_A,
              'new nodes form their own component(s), each joined to the last '
              'DFS root with prob. 1/2', _DFS_REASON),
    RuleEntry('strongly_connected_components', scc_rule, _args_A,
              'new source nodes pointing to originals and to new nodes',
              'Kosaraju\'s second pass visits nodes by decreasing finishing '
              'time: the new nodes come first there, so the whole second pass '
              'is shifted in time (d, f, time differ; structural hints agree)'),
    RuleEntry('mst_kruskal', mst_kruskal_rule, _args_A,
              'new nodes joined to originals by edges heavier than every '
              'original edge', 'none known: every original step stays valid'),
    RuleEntry('mst_prim', mst_prim_rule, _args_A_s,
              'new nodes joined to originals by edges heavier than every key '
              'Prim extracts (any weight towards unreachable originals)',
              'none known: every original step stays valid'),
    RuleEntry('bellman_ford', bellman_ford_rule, _args_A_s,
              'pendant new nodes on random originals (any weight), extra '
              'original neighbours when the two-hop detour never improves',
              'none known: every original step stays valid'),
    RuleEntry('dijkstra', dijkstra_rule, _args_A_s,
              'new nodes joined to far originals with weights that keep them '
              'beyond the farthest reachable distance',
              'anchors limited to originals within one max weight of the '
              'farthest distance (others would insert mid-run frames)'),
    RuleEntry('dag_shortest_paths', dag_shortest_paths_rule, _args_A_s,
              'new nodes unreachable from s, slotted into a topological order: '
              'in-edges from unreachable earlier originals, out-edges to later',
              'none known: every original step stays valid'),
    RuleEntry('floyd_warshall', floyd_warshall_rule, _args_A,
              'appended nodes with random edges and weights (they are '
              'intermediates only after every original)',
              'none known: every original step stays valid'),
)

for _entry in _ENTRIES:
  register(_entry)
