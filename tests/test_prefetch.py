"""Training batches prepared ahead, in a thread or in worker processes: the same
items in the same order, errors raised to the consumer, and the same training."""

import dataclasses

import jax
import numpy as np
import pytest

from nar import data as data_lib
from nar import methods
from nar.config import TrainConfig
from nar.sample import processed_spec
from nar.train import TaskBatches


@dataclasses.dataclass
class FailsAt:
  """Picklable batch function that fails at one step."""
  step: int

  def __call__(self, k):
    if k == self.step:
      raise ValueError(f'no batch at step {k}')
    return k * k


@dataclasses.dataclass
class DiesAt:
  """Picklable batch function whose process dies at one step."""
  step: int

  def __call__(self, k):
    if k == self.step:
      import os
      os._exit(1)
    return k


def _leaves_equal(a, b):
  la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))


def test_processes_give_the_thread_prefetchers_items_in_order():
  """Hint-ReLIC's items (originals, twins, pairs) from 2 worker processes equal
  those of the in-process thread, from a resumed start step on."""
  algorithm = 'find_maximum_subarray_kadane'
  config = TrainConfig(algorithm=algorithm, method='hint_relic', batch_size=4, hidden=8)
  tasks = methods.task_methods(config, [processed_spec(algorithm)])
  threads = data_lib.prefetcher(TaskBatches(tasks), 5, depth=2, processes=0)
  workers = data_lib.prefetcher(TaskBatches(tasks), 5, depth=2, processes=2)
  assert isinstance(workers, data_lib.ProcessPrefetcher)
  try:
    for _ in range(4):
      assert _leaves_equal(next(threads), next(workers))
  finally:
    threads.close()
    workers.close()


@pytest.mark.parametrize('processes', [0, 2])
def test_an_error_while_sampling_reaches_the_consumer_at_its_step(processes):
  prefetch = data_lib.prefetcher(FailsAt(3), 1, depth=4, processes=processes)
  try:
    assert [next(prefetch), next(prefetch)] == [1, 4]
    with pytest.raises(ValueError, match='no batch at step 3'):
      next(prefetch)
  finally:
    prefetch.close()


def test_a_sampling_process_that_dies_gives_a_run_error_naming_the_way_out():
  from nar.errors import RunError
  prefetch = data_lib.prefetcher(DiesAt(2), 0, depth=1, processes=1)
  try:
    assert next(prefetch) == 0
    with pytest.raises(RunError, match='sampling process died'):
      next(prefetch)
      next(prefetch)
  finally:
    prefetch.close()


def test_an_unpicklable_batch_function_is_refused_with_the_way_out():
  from nar.config import ConfigError
  with pytest.raises(ConfigError, match='sampling_processes=0'):
    data_lib.prefetcher(lambda k: k, 0, depth=2, processes=1)


def test_training_with_sampling_processes_equals_training_with_the_thread(tmp_path):
  """Same losses; an old config (no key) reads as 0, and a run may resume with
  another value."""
  from nar.config import config_conflicts
  from nar.train import train
  from tests.test_train import tiny
  cache = tmp_path / 'cache'
  train(tiny(tmp_path / 'thread', cache, steps=3, eval_every=3), progress=False)
  train(tiny(tmp_path / 'procs', cache, steps=3, eval_every=3, sampling_processes=1),
        progress=False)
  def losses(run):
    import json
    return [r['loss'] for r in map(json.loads, open(tmp_path / run / 'metrics.jsonl'))
            if r['kind'] == 'train']
  assert losses('thread') == losses('procs') and len(losses('thread')) == 3
  old = TrainConfig(algorithm='bfs', hidden=8).to_json()
  del old['sampling_processes']
  assert TrainConfig.from_json(old).sampling_processes == 0
  assert config_conflicts(old, TrainConfig(algorithm='bfs', hidden=8, sampling_processes=3)) == []
