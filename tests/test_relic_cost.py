"""experiments/relic_cost.py: the parts of a Hint-ReLIC step's counted work."""

from experiments import relic_cost


def test_without_the_invariance_terms_a_hint_relic_step_counts_as_a_baseline_step():
  off = relic_cost.cost('insertion_sort', hidden=8, batch_size=2, size=5,
                        settings={'relic_lambda': 0.0})
  assert off['hint_relic'] == off['supervised'] == off['baseline']
  assert off['relic_forward'] == off['relic_backward'] == 0


def test_the_papers_objective_adds_forward_and_backward_work_of_its_pair_steps():
  on = relic_cost.cost('insertion_sort', hidden=8, batch_size=2, size=5,
                       settings={'relic_pairs': 2})
  assert 0 < on['pair_steps'] <= 2 * 2                  # batch x pairs a twin
  assert on['relic_forward'] > 0 and on['relic_backward'] > on['relic_forward']
