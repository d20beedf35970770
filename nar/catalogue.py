"""Names of what this framework knows: the CLRS-30 algorithms, their families and
the processor kinds. Plain data, no dm-clrs or JAX import, so the command line
(`nar --help`, argument checks) starts fast; `tests/test_catalogue.py` checks the
lists against dm-clrs.
"""

from __future__ import annotations

from typing import Mapping

# The 30 algorithms of CLRS-30 (dm-clrs also has bipartite_matching and
# find_maximum_subarray, which are not part of the benchmark).
CLRS30_ALGORITHMS: tuple[str, ...] = (
    'activity_selector', 'articulation_points', 'bellman_ford', 'bfs',
    'binary_search', 'bridges', 'bubble_sort', 'dag_shortest_paths', 'dfs',
    'dijkstra', 'find_maximum_subarray_kadane', 'floyd_warshall', 'graham_scan',
    'heapsort', 'insertion_sort', 'jarvis_march', 'kmp_matcher', 'lcs_length',
    'matrix_chain_order', 'minimum', 'mst_kruskal', 'mst_prim',
    'naive_string_matcher', 'optimal_bst', 'quickselect', 'quicksort',
    'segments_intersect', 'strongly_connected_components', 'task_scheduling',
    'topological_sort',
)

# CLRS families, as in the CLRS-30 paper's tables.
FAMILIES: Mapping[str, tuple[str, ...]] = {
    'sorting': ('bubble_sort', 'heapsort', 'insertion_sort', 'quicksort'),
    'searching': ('binary_search', 'minimum', 'quickselect'),
    'divide_and_conquer': ('find_maximum_subarray_kadane',),
    'greedy': ('activity_selector', 'task_scheduling'),
    'dynamic_programming': ('lcs_length', 'matrix_chain_order', 'optimal_bst'),
    'graphs': ('articulation_points', 'bellman_ford', 'bfs', 'bridges',
               'dag_shortest_paths', 'dfs', 'dijkstra', 'floyd_warshall',
               'mst_kruskal', 'mst_prim', 'strongly_connected_components',
               'topological_sort'),
    'strings': ('kmp_matcher', 'naive_string_matcher'),
    'geometry': ('graham_scan', 'jarvis_march', 'segments_intersect'),
}

# dm-clrs processor kinds (`clrs.get_processor_factory`).
PROCESSOR_KINDS = (
    'deepsets', 'gat', 'gat_full', 'gatv2', 'gatv2_full', 'memnet_full', 'memnet_masked',
    'mpnn', 'pgn', 'pgn_mask', 'triplet_mpnn', 'triplet_pgn', 'triplet_pgn_mask',
    'gpgn', 'gpgn_mask', 'gmpnn', 'triplet_gpgn', 'triplet_gpgn_mask', 'triplet_gmpnn')
