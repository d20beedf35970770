"""The memory plan: its parts against the run they describe (trajectory lengths
against the probe, parameter counts against the network, the step against XLA's
buffer plan), and a run that cannot fit refused before anything is generated,
in one line with the nearest settings that fit."""

import contextlib
import io

import jax
import numpy as np
import pytest

from nar import cli, memory
from nar import data as data_lib
from nar import train as train_lib
from nar.catalogue import CLRS30_ALGORITHMS
from nar.config import ConfigError, TrainConfig

GIB = 2 ** 30


def test_every_algorithm_has_measured_trajectories():
  assert set(memory.TRAJECTORIES) == set(CLRS30_ALGORITHMS)
  for algorithm, rows in memory.TRAJECTORIES.items():
    sizes = [r[0] for r in rows]
    # String matchers train on sizes >= 14 (nar.preflight.check_sizes).
    first = [14, 16, 24, 32] if algorithm in data_lib.STRING_MATCHERS else [4, 8, 16, 32]
    assert sizes == sorted(sizes) and sizes[:4] == first, algorithm


@pytest.mark.parametrize('algorithm', CLRS30_ALGORITHMS)
def test_trajectories_are_the_probes(algorithm):
  """At the small sizes the table is the probe itself (same seed), and the planned
  padded shape is the padding plan's."""
  small = (14, 16) if algorithm in data_lib.STRING_MATCHERS else (4, 8)
  for size in small:
    samples = data_lib.make_train_samples(algorithm, data_lib.PROBE_SEED, 0,
                                          data_lib.PROBE_SAMPLES, (size,))
    assert memory.trajectory(algorithm, size) == (max(s.num_nodes for s in samples),
                                                  max(s.length for s in samples))
  # The padding plan of a run training at that size (its own probe).
  plan = data_lib.PaddingPlan.probe(data_lib.probe_samples(algorithm, (size,)))
  assert memory.padded_shape(algorithm, size) == plan.shapes[
      data_lib.size_of_step(algorithm, 0, (size,))]


@pytest.mark.parametrize('algorithm', ['bfs', 'insertion_sort', 'dfs', 'dag_shortest_paths',
                                       'find_maximum_subarray_kadane', 'heapsort'])
def test_lengths_between_the_table_sizes_grow_as_the_probe(algorithm):
  for size in (12, 20):
    samples = data_lib.make_train_samples(algorithm, data_lib.PROBE_SEED, 0,
                                          data_lib.PROBE_SAMPLES, (size,))
    n, t = memory.trajectory(algorithm, size)
    assert n == max(s.num_nodes for s in samples)
    assert t == pytest.approx(max(s.length for s in samples), rel=0.25), (algorithm, size)
  # Beyond the table: growing, as the nearest pair does.
  assert memory.trajectory(algorithm, 1000)[1] >= memory.trajectory(algorithm, 500)[1]


@pytest.mark.parametrize('kw', [
    dict(algorithm='bfs', hidden=16),
    dict(algorithm='kmp_matcher', hidden=24, processor='mpnn'),
    dict(algorithm='insertion_sort,bfs', hidden=8),
    dict(algorithm='bfs', hidden=16, method='hint_relic', relic_critic_hidden=8),
    dict(algorithm='insertion_sort,dfs', hidden=8, method='hint_relic', relic_critic_hidden=16),
])
def test_parameter_count_is_the_networks(kw):
  config = TrainConfig(**kw, train_sizes=(16,), batch_size=2).validate()
  model = train_lib.build_run_model(config)
  params = jax.eval_shape(lambda: model.init_params(jax.random.PRNGKey(0)))
  assert memory.parameter_count(config) == sum(
      int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))


def test_the_step_estimate_follows_xla_buffer_plan():
  """The step's coefficients were fitted to XLA's buffer plan on larger
  configurations (docs/memory.md); here a small one still lands within 25%."""
  config = TrainConfig(algorithm='bfs', hidden=32, batch_size=8, train_sizes=(12,)).validate()
  model = train_lib.build_run_model(config)
  optimizer = train_lib.make_optimizer(config)
  placement = train_lib.Placement.create(config.batch_size)
  task = model.tasks[0]
  update = train_lib.make_update(task.loss_fn(model.net), optimizer, placement)
  state = model.state_template(optimizer)
  compiled = update.lower(state['params'], state['opt_state'], jax.random.PRNGKey(0),
                          *task.place(task.batch(0), placement)).compile()
  params = memory.parameter_count(config)
  xla = compiled.memory_analysis().temp_size_in_bytes - 2 * 4 * params
  estimate = config.batch_size * memory.sample_step_bytes(config, 'bfs', 12)
  assert estimate == pytest.approx(xla, rel=0.25)


# --------------------------------------------------------------- refusals
def _nar(argv, monkeypatch, free):
  """`nar ...` in this process with `free` bytes free; training itself is replaced
  by a record of the configuration it would train."""
  seen = []
  monkeypatch.setattr(train_lib, 'free_memory_bytes', lambda device=None: free)

  def record(run, config, *args):
    seen.append(config)
    return {'test_size': config.test_size, 'test_score': 0.0}
  monkeypatch.setattr(train_lib, '_train', record)
  err = io.StringIO()
  with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
    try:
      code = cli.main(argv)
    except SystemExit as e:
      code = e.code
  return code, err.getvalue(), seen


@pytest.mark.parametrize('argv, nearest', [
    (['--hidden', '50000'], '--hidden '),
    (['--set', 'train_sizes=[100000]'], 'train_sizes up to '),
    (['--batch-size', '100000'], '--batch-size '),
    (['--set', 'remat="none"', '--set', 'train_sizes=[48]'], '--set remat=full'),
    (['--method', 'hint_relic', '--set', 'augmentations=5000'], '--set augmentations='),
])
def test_a_run_that_cannot_fit_is_refused_with_the_nearest_settings(tmp_path, monkeypatch,
                                                                     argv, nearest):
  out = tmp_path / 'run'
  # Generating data or building the model would mean the refusal came too late.
  monkeypatch.setattr(data_lib, 'probe_samples', lambda *a: pytest.fail('data generated'))
  code, err, seen = _nar(['train', '-a', 'bfs', '--out', str(out), *argv], monkeypatch,
                         free=4 * GIB)
  lines = err.strip().splitlines()
  assert code == 2 and len(lines) == 1 and 'Traceback' not in err, err
  assert lines[0].startswith('nar: error: training bfs ') and 'GiB is free' in lines[0]
  assert 'needs about' in lines[0] and 'nearest settings that fit: ' in lines[0]
  assert nearest in lines[0] and not seen and not out.exists()
  # The setting it names fits, and is the largest that does.
  if nearest == '--hidden ':
    suggestion = lines[0].split(nearest)[1].split(',')[0]
    base = cli._config_from_args(cli.build_parser().parse_args(
        ['train', '-a', 'bfs', '--out', str(out), *argv]))
    import dataclasses
    fits = lambda h: memory.plan_training(dataclasses.replace(base, hidden=h),  # noqa: E731
                                          4 * GIB).host <= 4 * GIB
    assert fits(int(suggestion)) and not fits(int(suggestion) + 1)


def test_what_fits_trains(tmp_path, monkeypatch):
  code, err, seen = _nar(['train', '-a', 'bfs', '--out', str(tmp_path / 'run')], monkeypatch,
                         free=4 * GIB)
  assert code == 0, err
  assert memory.plan_training(seen[0], 4 * GIB).host <= 4 * GIB


def test_the_check_can_be_turned_off(tmp_path, monkeypatch):
  monkeypatch.setenv('NAR_MEMORY_CHECK', '0')
  code, err, seen = _nar(['train', '-a', 'bfs', '--hidden', '50000', '--out',
                          str(tmp_path / 'run')], monkeypatch, free=4 * GIB)
  assert code == 0 and seen[0].hidden == 50000


def test_on_an_accelerator_the_device_and_the_host_are_checked_apart():
  config = TrainConfig(algorithm='bfs', hidden=64, train_sizes=(32,), test_size=16).validate()
  plan = memory.plan_training(config, 8 * GIB, shared=False)
  assert plan.step > plan.evaluation       # the step sets the device's peak
  memory.check_training_memory(config, free=plan.device, host_free=plan.data + plan.runtime,
                               shared=False)
  with pytest.raises(ConfigError, match='is free on each device'):
    memory.check_training_memory(config, free=plan.device - 2 ** 20, shared=False,
                                 host_free=100 * GIB)
  with pytest.raises(ConfigError, match='is free on the host'):
    memory.check_training_memory(config, free=plan.device, shared=False,
                                 host_free=plan.data + plan.runtime - 2 ** 20)
  # Data parallel: each device holds its share of the batch.
  assert memory.plan_training(config, 8 * GIB, devices=4).step == pytest.approx(plan.step / 4,
                                                                                rel=0.01)


def test_no_free_memory_figure_no_check():
  config = TrainConfig(algorithm='bfs', hidden=50000).validate()
  assert memory.check_training_memory(config, free=None).state > 100 * GIB
