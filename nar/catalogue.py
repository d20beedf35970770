"""Names of what this framework knows: the CLRS-30 algorithms, their families,
their hints and the processor kinds. Plain data, no dm-clrs or JAX import, so the
command line (`nar --help`, `nar algorithms`, argument checks) starts fast;
`tests/test_catalogue.py` checks the lists against dm-clrs.
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

# The hints of each algorithm, 'name:location/type' in spec order, after the
# protocol's processing (`nar.sample.processed_spec`: static `pred_h` moved to the
# inputs, SHOULD_BE_PERMUTATION hints split into a permutation pointer and a mask):
# what `nar algorithms` lists. Written out from dm-clrs 2.0.3; the test
# `tests/test_catalogue.py::test_hints_are_the_processed_specs` compares them and,
# when they differ, prints the table to paste here.
HINTS: Mapping[str, tuple[str, ...]] = {
    'activity_selector': ('selected_h:node/mask', 'm:node/mask_one', 'k:node/mask_one'),
    'articulation_points': ('is_cut_h:node/mask', 'pi_h:node/pointer',
        'color:node/categorical', 'd:node/scalar', 'f:node/scalar', 'low:node/scalar',
        'child_cnt:node/scalar', 's_prev:node/pointer', 's:node/mask_one', 'u:node/mask_one',
        'v:node/mask_one', 's_last:node/mask_one', 'time:graph/scalar'),
    'bellman_ford': ('pi_h:node/pointer', 'd:node/scalar', 'msk:node/mask'),
    'bfs': ('reach_h:node/mask', 'pi_h:node/pointer'),
    'binary_search': ('low:node/mask_one', 'high:node/mask_one', 'mid:node/mask_one'),
    'bridges': ('is_bridge_h:edge/mask', 'pi_h:node/pointer', 'color:node/categorical',
        'd:node/scalar', 'f:node/scalar', 'low:node/scalar', 's_prev:node/pointer',
        's:node/mask_one', 'u:node/mask_one', 'v:node/mask_one', 's_last:node/mask_one',
        'time:graph/scalar'),
    'bubble_sort': ('pred_h:node/pointer', 'i:node/mask_one', 'j:node/mask_one'),
    'dag_shortest_paths': ('pi_h:node/pointer', 'd:node/scalar', 'mark:node/mask',
        'topo_h:node/pointer', 'topo_head_h:node/mask_one', 'color:node/categorical',
        's_prev:node/pointer', 'u:node/mask_one', 'v:node/mask_one', 's_last:node/mask_one',
        'phase:graph/mask'),
    'dfs': ('pi_h:node/pointer', 'color:node/categorical', 'd:node/scalar', 'f:node/scalar',
        's_prev:node/pointer', 's:node/mask_one', 'u:node/mask_one', 'v:node/mask_one',
        's_last:node/mask_one', 'time:graph/scalar'),
    'dijkstra': ('pi_h:node/pointer', 'd:node/scalar', 'mark:node/mask', 'in_queue:node/mask',
        'u:node/mask_one'),
    'find_maximum_subarray_kadane': ('best_low:node/mask_one', 'best_high:node/mask_one',
        'best_sum:graph/scalar', 'i:node/mask_one', 'j:node/mask_one', 'sum:graph/scalar'),
    'floyd_warshall': ('Pi_h:edge/pointer', 'D:edge/scalar', 'msk:edge/mask',
        'k:node/mask_one'),
    'graham_scan': ('best:node/mask_one', 'atans:node/scalar', 'in_hull_h:node/mask',
        'stack_prev:node/pointer', 'last_stack:node/mask_one', 'i:node/mask_one',
        'phase:graph/categorical'),
    'heapsort': ('pred_h:node/pointer', 'parent:node/pointer', 'i:node/mask_one',
        'j:node/mask_one', 'largest:node/mask_one', 'heap_size:node/mask_one',
        'phase:graph/categorical'),
    'insertion_sort': ('pred_h:node/pointer', 'i:node/mask_one', 'j:node/mask_one'),
    'jarvis_march': ('in_hull_h:node/mask', 'best:node/mask_one', 'last_point:node/mask_one',
        'endpoint:node/mask_one', 'i:node/mask_one', 'phase:graph/categorical'),
    'kmp_matcher': ('pi:node/pointer', 'is_reset:node/mask', 'k:node/mask_one',
        'k_reset:graph/mask', 'q:node/mask_one', 'q_reset:graph/mask', 's:node/mask_one',
        'i:node/mask_one', 'phase:graph/mask'),
    'lcs_length': ('b_h:edge/categorical', 'c:edge/scalar'),
    'matrix_chain_order': ('m:edge/scalar', 's_h:edge/pointer', 'msk:edge/mask'),
    'minimum': ('min_h:node/mask_one', 'i:node/mask_one'),
    'mst_kruskal': ('in_mst_h:edge/mask', 'pi:node/pointer', 'u:node/mask_one',
        'v:node/mask_one', 'root_u:node/mask_one', 'root_v:node/mask_one', 'mask_u:node/mask',
        'mask_v:node/mask', 'phase:graph/categorical'),
    'mst_prim': ('pi_h:node/pointer', 'key:node/scalar', 'mark:node/mask',
        'in_queue:node/mask', 'u:node/mask_one'),
    'naive_string_matcher': ('s:node/mask_one', 'i:node/mask_one', 'j:node/mask_one'),
    'optimal_bst': ('root_h:edge/pointer', 'e:edge/scalar', 'w:edge/scalar', 'msk:edge/mask'),
    'quickselect': ('pred_h:node/pointer', 'p:node/mask_one', 'r:node/mask_one',
        'i:node/mask_one', 'j:node/mask_one', 'i_rank:graph/scalar', 'target:graph/scalar',
        'pivot:node/mask_one'),
    'quicksort': ('pred_h:node/pointer', 'p:node/mask_one', 'r:node/mask_one',
        'i:node/mask_one', 'j:node/mask_one'),
    'segments_intersect': ('i:node/mask_one', 'j:node/mask_one', 'k:node/mask_one',
        'dir:node/scalar', 'on_seg:node/mask'),
    'strongly_connected_components': ('scc_id_h:node/pointer', 'A_t:edge/mask',
        'color:node/categorical', 'd:node/scalar', 'f:node/scalar', 's_prev:node/pointer',
        's:node/mask_one', 'u:node/mask_one', 'v:node/mask_one', 's_last:node/mask_one',
        'time:graph/scalar', 'phase:graph/mask'),
    'task_scheduling': ('selected_h:node/mask', 'i:node/mask_one', 't:graph/scalar'),
    'topological_sort': ('topo_h:node/pointer', 'topo_head_h:node/mask_one',
        'color:node/categorical', 's_prev:node/pointer', 's:node/mask_one', 'u:node/mask_one',
        'v:node/mask_one', 's_last:node/mask_one'),
}

# The algorithms with a causally-equivalent augmentation rule (`augment.supported()`,
# which imports dm-clrs): the ones Hint-ReLIC can train, checked before anything
# loads (`nar.preflight`); `tests/test_catalogue.py` compares the two.
AUGMENTED: tuple[str, ...] = tuple(a for a in CLRS30_ALGORITHMS if a != 'segments_intersect')
