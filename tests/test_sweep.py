"""Sweeps skip finished runs and resume unfinished ones; the report aggregates them."""

import json
import os
import subprocess
import sys

import pytest

from experiments import protocols, runner, scores, stats
from experiments import sweep as sw
from experiments.report import report
from nar.config import ConfigError

TINY = dict(steps=2, hidden=8, batch_size=4, eval_every=1, train_sizes=[4], val_samples=4,
            test_samples=4, test_size=6, eval_batch_size=4)


def test_sweep_skips_finished_runs_and_reports(tmp_path):
  out = str(tmp_path / 'grid')
  overrides = dict(TINY, cache_dir=str(tmp_path / 'cache'))
  first = sw.sweep('cpu', ['bfs'], ['baseline'], 2, out, overrides=overrides, progress=False)
  assert [s for _, s in first if s.startswith('done')] and len(first) == 2
  # Simulate a sweep killed during its second run: that run has no results.json.
  killed = sw.run_dir(out, 'bfs', 'baseline', 1)
  os.remove(os.path.join(killed, 'results.json'))
  kept = os.path.join(sw.run_dir(out, 'bfs', 'baseline', 0), 'results.json')
  before = os.stat(kept).st_mtime_ns
  again = dict(sw.sweep('cpu', ['bfs'], ['baseline'], 2, out, overrides=overrides,
                        progress=False))
  assert again[sw.run_dir(out, 'bfs', 'baseline', 0)] == 'already finished'
  assert again[killed].startswith('done')
  assert os.stat(kept).st_mtime_ns == before
  text = report(out)
  assert '| bfs |' in text and '(2)' in text and '99.73' in text
  assert os.path.exists(os.path.join(out, 'ood_scores.png'))
  assert os.path.exists(os.path.join(out, 'validation_curves.png'))
  # A run of a sweep in this process keeps its log beside it too.
  assert os.path.exists(os.path.join(killed, 'train.log'))


def test_in_process_run_output_is_kept_in_its_log_with_progress_refreshes_thinned():
  import io
  screen, log = io.StringIO(), io.StringIO()
  tee = runner._TeeToLog(screen, log)
  tee.write('[nar] bfs: baseline\n')
  for k in range(5):                # a progress bar refreshing in place
    tee.write(f'\rbfs: {k}/5')
  tee.write('\n[nar] bfs baseline: OOD 0.9\n')
  assert screen.getvalue().count('\r') == 5
  assert log.getvalue() == '[nar] bfs: baseline\nbfs: 0/5\n\n[nar] bfs baseline: OOD 0.9\n'
  assert not tee.isatty()


def test_incomplete_grid_is_reported_as_such(tmp_path):
  out = tmp_path / 'g'
  d = out / 'bfs' / 'baseline' / 'seed0'
  d.mkdir(parents=True)
  json.dump({'algorithm': 'bfs', 'method': 'baseline', 'seed': 0, 'test_score': 0.9},
            open(d / 'results.json', 'w'))
  json.dump({'seeds': 3}, open(out / 'sweep.json', 'w'))
  text = report(str(out), plots=False)
  assert '*incomplete*' in text and 'n/a' in text
  for seed in range(3):
    d = out / 'dfs' / 'baseline' / f'seed{seed}'
    d.mkdir(parents=True)
    json.dump({'algorithm': 'dfs', 'method': 'baseline', 'seed': seed, 'test_score': 0.2},
              open(d / 'results.json', 'w'))
  family = next(line for line in report(str(out), plots=False).splitlines()
                if line.startswith('| graphs |'))
  assert '| 20.00 (1/12: dfs) |' in family       # bfs (1 of 3 seeds) left out, and named


def test_a_protocols_long_run_algorithms_take_their_own_seed_count(tmp_path):
  """mid gives quicksort (runs of ~30 minutes here) 3 seeds, the others 5: a sweep
  without --seeds runs that many, and the report calls 3 quicksort seeds complete
  while 3 kadane seeds are not."""
  mid = protocols.get_protocol('mid')
  assert (mid.seeds_for('quicksort'), mid.seeds_for('binary_search')) == (3, 5)
  assert mid.seeds_for('quicksort+binary_search') == 3
  cells = sw.grid(['quicksort', 'binary_search'], ['baseline'], mid.seeds_for)
  assert [s for a, _, _, s in cells if a == 'quicksort'] == [0, 1, 2]
  assert [s for a, _, _, s in cells if a == 'binary_search'] == [0, 1, 2, 3, 4]
  out = tmp_path / 'g'
  for algorithm in ('quicksort', 'find_maximum_subarray_kadane'):
    for seed in range(3):
      d = out / algorithm / 'baseline' / f'seed{seed}'
      d.mkdir(parents=True)
      json.dump({'algorithm': algorithm, 'method': 'baseline', 'seed': seed, 'test_score': 0.5},
                open(d / 'results.json', 'w'))
  json.dump({'protocol': 'mid', 'seeds': 5}, open(out / 'sweep.json', 'w'))
  rows = {}
  for line in report(str(out), plots=False).splitlines():       # the first table: OOD
    if line.startswith(('| quicksort |', '| find_maximum_subarray_kadane |')):
      rows.setdefault(line.split('|')[1].strip(), line)
  assert '*incomplete*' not in rows['quicksort'] and '(3)' in rows['quicksort']
  assert '*incomplete*' in rows['find_maximum_subarray_kadane']
  # A grid asked for fewer seeds than the protocol's exception: the grid's count.
  json.dump({'protocol': 'mid', 'seeds': 2}, open(out / 'sweep.json', 'w'))
  assert '(3) *incomplete*' not in report(str(out), plots=False)
  with pytest.raises(ConfigError, match='algorithm_seeds'):
    protocols.register_protocol(protocols.Protocol(name='bad', overrides={}, seeds=1,
                                                   algorithm_seeds={'quicksort': 0}))
  with pytest.raises(ConfigError, match='bogosort'):
    protocols.register_protocol(protocols.Protocol(name='bad', overrides={}, seeds=1,
                                                   algorithm_seeds={'bogosort': 2}))
  assert 'bad' not in protocols.PROTOCOLS


def test_a_sweep_without_seeds_runs_the_protocols_count_for_each_algorithm(tmp_path, monkeypatch):
  # The registry restored afterwards.
  monkeypatch.setattr(protocols, 'PROTOCOLS', dict(protocols.PROTOCOLS))
  protocols.register_protocol(protocols.Protocol(name='toy', overrides=TINY, seeds=2,
                                                 algorithm_seeds={'bfs': 1}))
  out = str(tmp_path / 'grid')
  done = sw.sweep('toy', ['bfs'], ['baseline'], None, out,
                  overrides={'cache_dir': str(tmp_path / 'cache')}, progress=False)
  assert [path for path, _ in done] == [sw.run_dir(out, 'bfs', 'baseline', 0)]
  assert json.load(open(os.path.join(out, 'sweep.json')))['seeds'] == 2


def test_bad_shard_and_protocol():
  with pytest.raises(ConfigError):
    sw.parse_shard('3/2')
  with pytest.raises(ConfigError):
    sw.make_config('gpu-cluster', 'bfs', 'baseline', 0, '/tmp/x', {})


def test_parallel_sweep_runs_each_run_in_its_own_process_and_survives_a_failure(tmp_path):
  from nar.train import RunDir
  out = str(tmp_path / 'grid')
  overrides = dict(TINY, cache_dir=str(tmp_path / 'cache'))
  # Run seed 1's directory is held by another process (here: this one): that run
  # must fail (exit code 2, reason in its train.log) without stopping the other.
  clash = sw.run_dir(out, 'bfs', 'baseline', 1)
  os.makedirs(clash)
  holder = RunDir(clash)
  holder.lock()
  try:
    done = dict(sw.sweep('cpu', ['bfs'], ['baseline'], 2, out, workers=2, overrides=overrides,
                         progress=False))
  finally:
    holder.unlock()
  assert done[sw.run_dir(out, 'bfs', 'baseline', 0)].startswith('done, OOD')
  assert done[clash].startswith('FAILED (exit code 2')
  with open(os.path.join(sw.run_dir(out, 'bfs', 'baseline', 0), 'train.log')) as f:
    assert 'OOD score' in f.read()
  with open(os.path.join(clash, 'train.log')) as f:
    assert 'in use by another process' in f.read()


def test_sweep_refuses_a_directory_of_other_settings_before_running_anything(tmp_path):
  out = str(tmp_path / 'grid')
  overrides = dict(TINY, cache_dir=str(tmp_path / 'cache'))
  clash = sw.run_dir(out, 'bfs', 'hint_relic', 1)
  os.makedirs(clash)
  other = sw.make_config('cpu', 'bfs', 'hint_relic', 1, out, dict(overrides, relic_lambda=1.0))
  with open(os.path.join(clash, 'config.json'), 'w') as f:
    json.dump(other.to_json(), f)
  with pytest.raises(ConfigError, match=r'relic_lambda: saved 1\.0, now 0\.1'):
    sw.sweep('cpu', ['bfs'], ['hint_relic'], 2, out, overrides=overrides, progress=False)
  assert not os.path.exists(sw.run_dir(out, 'bfs', 'hint_relic', 0))   # nothing ran


def test_baseline_runs_do_not_conflict_on_hint_relic_settings(tmp_path):
  from nar.config import config_conflicts
  base = sw.make_config('cpu', 'bfs', 'baseline', 0, str(tmp_path), {})
  saved = dict(base.to_json(), relic_temperature=0.1, augmentations=2)
  assert config_conflicts(saved, base) == []
  relic = sw.make_config('cpu', 'bfs', 'hint_relic', 0, str(tmp_path), {})
  assert config_conflicts(dict(relic.to_json(), method='hint_relic', relic_temperature=0.1),
                          relic) == [f'relic_temperature: saved 0.1, now {relic.relic_temperature!r}']


def test_a_setting_group_is_ignored_only_between_methods_that_do_not_read_it(tmp_path):
  from nar import registry
  from nar.config import HINT_RELIC, config_conflicts, method_reads, setting_group
  # Declared on the fields, not by a naming rule: augmentations has no relic_ prefix.
  assert setting_group('augmentations') == setting_group('relic_twin') == HINT_RELIC
  assert setting_group('hidden') is None
  name = 'toy_method_reading_nothing'
  if name not in registry.methods():
    registry.register_method(name, 'nar.methods:Baseline', description='test')
  assert not method_reads(name, HINT_RELIC) and method_reads('twins_only', HINT_RELIC)
  assert method_reads('a_method_not_registered_now', HINT_RELIC)   # conservative
  toy = sw.make_config('cpu', 'bfs', 'baseline', 0, str(tmp_path), {})
  toy.method = name
  assert config_conflicts(dict(toy.to_json(), augmentations=3), toy) == []
  assert config_conflicts(dict(toy.to_json(), hidden=8), toy) == [
      f'hidden: saved 8, now {toy.hidden!r}']
  # A baseline run resumed as Hint-ReLIC is a different run whatever the settings say.
  assert config_conflicts(dict(toy.to_json(), method='hint_relic', augmentations=3), toy) == [
      f'augmentations: saved 3, now {toy.augmentations!r}',
      f"method: saved 'hint_relic', now {name!r}"]


def test_finished_run_given_more_steps_is_extended_and_then_skipped(tmp_path):
  out = str(tmp_path / 'grid')
  overrides = dict(TINY, cache_dir=str(tmp_path / 'cache'), log_every=1)
  sw.sweep('cpu', ['bfs'], ['baseline'], 1, out, overrides=overrides, progress=False)
  run = sw.run_dir(out, 'bfs', 'baseline', 0)
  longer = dict(overrides, steps=3)
  done = dict(sw.sweep('cpu', ['bfs'], ['baseline'], 1, out, overrides=longer, progress=False))
  assert done[run].startswith('done')
  with open(os.path.join(run, 'results.json')) as f:
    assert json.load(f)['steps'] == 3
  with open(os.path.join(run, 'metrics.jsonl')) as f:
    steps = [json.loads(x)['step'] for x in f if '"train"' in x]
  assert steps == [1, 2, 3]                     # resumed from step 2, nothing repeated
  again = dict(sw.sweep('cpu', ['bfs'], ['baseline'], 1, out, overrides=longer, progress=False))
  assert again[run] == 'already finished'
  with pytest.raises(ConfigError, match='steps: finished with 3, now 2'):
    sw.sweep('cpu', ['bfs'], ['baseline'], 1, out, overrides=overrides, progress=False)


def test_cpu_protocol_gives_long_trajectory_algorithms_more_steps(tmp_path):
  assert sw.make_config('cpu', 'bfs', 'baseline', 0, str(tmp_path), {}).steps == 500
  dfs = sw.make_config('cpu', 'dfs', 'baseline', 0, str(tmp_path), {})
  assert (dfs.steps, dfs.eval_every) == (2000, 250)
  assert sw.make_config('cpu', 'dfs', 'baseline', 0, str(tmp_path), {'steps': 7}).steps == 7


def test_vary_runs_every_value_as_its_own_report_column(tmp_path):
  out = str(tmp_path / 'grid')
  vary = sw.parse_vary(['hidden=8,16'])
  assert vary == {'hidden': [8, 16]}
  overrides = dict(TINY, cache_dir=str(tmp_path / 'cache'))
  del overrides['hidden']
  done = dict(sw.sweep('cpu', ['bfs'], ['baseline'], 1, out, overrides=overrides,
                       progress=False, vary=vary))
  assert set(done) == {sw.run_dir(out, 'bfs', 'baseline', 0, {'hidden': 8}),
                       sw.run_dir(out, 'bfs', 'baseline', 0, {'hidden': 16})}
  with open(os.path.join(sw.run_dir(out, 'bfs', 'baseline', 0, {'hidden': 16}),
                         'config.json')) as f:
    assert json.load(f)['hidden'] == 16
  text = report(out, plots=False)
  header = next(line for line in text.splitlines() if line.startswith('| algorithm |'))
  assert 'baseline@hidden=8 |' in header and 'baseline@hidden=16 |' in header
  with pytest.raises(ConfigError, match='unknown configuration key'):
    sw.parse_vary(['no_such_key=1,2'])
  with pytest.raises(ConfigError, match='--vary expects'):
    sw.parse_vary(['hidden'])


def test_sweeps_into_one_directory_add_to_its_grid(tmp_path):
  out = str(tmp_path)
  sw.record_grid(out, 'cpu', ['bfs', 'dfs'], ['baseline', 'hint_relic'], 3)
  sw.record_grid(out, 'cpu', ['dfs'], ['hint_relic'], 2)            # a part, fewer seeds
  sw.record_grid(out, 'cpu', ['insertion_sort'], ['baseline'], 3, vary={'batch_size': [32]})
  grid = sw.record_grid(out, 'cpu', ['insertion_sort'], ['twins_only'], 3,
                        vary={'batch_size': [16, 32], 'relic_lambda': [1.0]})
  assert grid['algorithms'] == ['bfs', 'dfs', 'insertion_sort']
  assert grid['vary'] == {'batch_size': [32, 16], 'relic_lambda': [1.0]}
  assert grid['methods'] == ['baseline', 'hint_relic', 'twins_only'] and grid['seeds'] == 3
  with open(os.path.join(out, 'sweep.json')) as f:
    assert json.load(f) == grid
  # A part run with other --set values adds to the record too (it was once replaced).
  grid = sw.record_grid(out, 'cpu', ['heapsort'], ['baseline'], 1,
                        overrides={'relic_temperature': 0.1})
  assert grid['algorithms'][-1] == 'heapsort' and grid['seeds'] == 3
  assert grid['overrides'] == {} and grid['other_overrides'] == [{'relic_temperature': 0.1}]
  again = sw.record_grid(out, 'cpu', ['heapsort'], ['baseline'], 1,
                         overrides={'relic_temperature': 0.1})
  assert again['other_overrides'] == [{'relic_temperature': 0.1}]
  # Settings of how runs execute (resumable differences) do not make a part another grid.
  again = sw.record_grid(out, 'cpu', ['heapsort'], ['hint_relic'], 1,
                         overrides={'sampling_processes': 2, 'remat': 'none'})
  assert again['overrides'] == {} and again['other_overrides'] == [{'relic_temperature': 0.1}]


def test_report_names_the_column_with_the_highest_validation_not_test_score(tmp_path):
  out = tmp_path / 'g'
  for label, val, test in (('hint_relic@relic_temperature=0.1', 0.95, 0.7),
                           ('hint_relic@relic_temperature=0.5', 0.97, 0.4)):
    for seed in (0, 1):
      d = out / 'insertion_sort' / label / f'seed{seed}'
      d.mkdir(parents=True)
      json.dump({'algorithm': 'insertion_sort', 'method': 'hint_relic', 'seed': seed,
                 'test_score': test, 'best_val': {'score': val - 0.01 * seed, 'step': 5}},
                open(d / 'results.json', 'w'))
  text = report(str(out), plots=False)
  row = next(line for line in text.splitlines()
             if line.startswith('| insertion_sort |') and 'val' not in line and '+-' in line
             and line.rstrip().endswith('| hint_relic@relic_temperature=0.5 |'))
  assert '96.5 +- 0.7' in row and '94.5 +- 0.7' in row


def test_family_difference_is_over_the_algorithms_both_methods_have(tmp_path):
  out = tmp_path / 'g'
  scores = {('bfs', 'baseline'): 0.9, ('dfs', 'baseline'): 0.1, ('bfs', 'hint_relic'): 0.8}
  for (algorithm, method), score in scores.items():
    d = out / algorithm / method / 'seed0'
    d.mkdir(parents=True)
    json.dump({'algorithm': algorithm, 'method': method, 'seed': 0, 'test_score': score},
              open(d / 'results.json', 'w'))
  family = next(line for line in report(str(out), plots=False).splitlines()
                if line.startswith('| graphs |'))
  # The raw family means (50 vs 80) would read as Hint-ReLIC ahead; over the one
  # algorithm both have, it is 10 points behind.
  assert '| 50.00 (2/12: bfs, dfs) | 80.00 (1/12: bfs) |' in family
  assert family.rstrip().endswith('| -10.00 (ahead on 0/1: bfs) |')


def test_a_registered_protocol_configures_runs(tmp_path, monkeypatch):
  # The registry restored afterwards.
  monkeypatch.setattr(protocols, 'PROTOCOLS', dict(protocols.PROTOCOLS))
  toy = protocols.register_protocol(protocols.Protocol(
      name='toy', overrides=dict(hidden=8, steps=20, relic_lambda=0.5), seeds=2,
      algorithm_overrides={'dfs': dict(steps=40)}, description='a test protocol'))
  assert protocols.get_protocol('toy') is toy and list(protocols.PROTOCOLS)[-1] == 'toy'
  bfs = sw.make_config('toy', 'bfs', 'hint_relic', 1, str(tmp_path), {'batch_size': 4})
  assert (bfs.hidden, bfs.steps, bfs.relic_lambda, bfs.batch_size, bfs.seed) == (8, 20, 0.5, 4, 1)
  assert bfs.out == sw.run_dir(str(tmp_path), 'bfs', 'hint_relic', 1)
  assert sw.make_config('toy', 'dfs', 'baseline', 0, str(tmp_path), {}).steps == 40
  assert sw.make_config('toy', 'dfs', 'baseline', 0, str(tmp_path), {}, {'steps': 3}).steps == 3
  with pytest.raises(ConfigError, match='already registered'):
    protocols.register_protocol(protocols.Protocol(name='toy', overrides={}, seeds=1))
  for bad, match in ((dict(overrides={'hiden': 8}), 'hiden'),
                     (dict(overrides={'seed': 3}), 'seed'),
                     (dict(overrides={}, algorithm_overrides={'bogosort': {}}), 'bogosort'),
                     (dict(overrides={}, seeds=0), 'seeds')):
    with pytest.raises(ConfigError, match=match):
      protocols.register_protocol(protocols.Protocol(**{'name': 'bad', 'seeds': 1, **bad}))
  assert 'bad' not in protocols.PROTOCOLS


def test_the_names_that_moved_out_of_the_sweep_module_are_still_importable_from_it():
  """Protocols, the report and its statistics left experiments/sweep.py (issue 43):
  a script that imports them from there gets the same objects."""
  from experiments import report as report_module
  moved = {protocols: ('Protocol', 'PROTOCOLS', 'register_protocol', 'get_protocol',
                       'TRIPLET_GMPNN', 'MULTI_TASK_JOIN', 'algorithm_entries'),
           runner: ('compile_signature',), scores: ('collect',), report_module: ('report',),
           stats: ('PairedTest', 'paired_test', 'holm', 't_interval', 'format_test')}
  for module, names in moved.items():
    for name in names:
      assert getattr(sw, name) is getattr(module, name), name
  assert all(hasattr(sw, name) for name in sw.__all__)


def test_the_protocols_of_the_committed_results_are_unchanged(tmp_path):
  # results/ holds runs of these settings: `nar sweep` recognises a finished run
  # only if its protocol still gives the settings it ran with.
  assert {name: (p.overrides, p.seeds, p.algorithm_overrides)
          for name, p in protocols.PROTOCOLS.items() if name in ('paper', 'cpu')} == {
      'paper': (dict(hidden=128, batch_size=32, steps=10_000, eval_every=50, test_size=64), 10,
                {}),
      'cpu': (dict(hidden=32, batch_size=16, steps=500, eval_every=100, test_size=64), 3,
              {'dfs': dict(steps=2000, eval_every=250),
               'naive_string_matcher': dict(steps=2000, eval_every=250)})}
def test_sweeps_recording_their_grid_at_once_all_add_to_it(tmp_path):
  """Several `nar sweep` processes into one directory: no crash on a shared
  temporary file, and sweep.json ends with every sweep's algorithms."""
  code = ('import sys\nfrom experiments import sweep\n'
          'for i in range(15):\n'
          '  sweep.record_grid(sys.argv[1], "cpu", [sys.argv[2]], ["baseline"], 1)\n')
  algorithms = ['bfs', 'dfs', 'minimum', 'heapsort']
  procs = [subprocess.Popen([sys.executable, '-c', code, str(tmp_path), a],
                            stderr=subprocess.PIPE, text=True) for a in algorithms]
  for p in procs:
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
  grid = json.load(open(tmp_path / 'sweep.json'))
  assert sorted(grid['algorithms']) == sorted(algorithms)


def test_a_run_another_sweep_is_doing_is_skipped_not_a_crash(tmp_path):
  from nar.train import RunDir
  out = str(tmp_path / 'grid')
  busy = sw.run_dir(out, 'bfs', 'baseline', 0)
  os.makedirs(busy)
  holder = RunDir(busy)
  holder.lock()
  try:
    done = dict(sw.sweep('cpu', ['bfs'], ['baseline'], 1, out, progress=False,
                         overrides=dict(TINY, cache_dir=str(tmp_path / 'cache'))))
  finally:
    holder.unlock()
  assert done[busy] == 'skipped (in use by another process)'


def test_ctrl_c_of_a_parallel_sweep_starts_no_further_run(tmp_path, monkeypatch):
  import threading
  import time
  started = []
  lock = threading.Lock()

  def fake_run(config):
    with lock:
      started.append(config.out)
      first = len(started) == 1
    if first:
      raise KeyboardInterrupt       # as the main thread gets it from the terminal
    time.sleep(0.3)
    return config.out, 'done, OOD 1.0000'
  monkeypatch.setattr(runner, '_run_in_subprocess', fake_run)
  with pytest.raises(KeyboardInterrupt):
    sw.sweep('cpu', ['bfs'], ['baseline'], 8, str(tmp_path / 'grid'), workers=2,
             overrides=TINY, progress=False)
  assert len(started) <= 3           # the ones already going, not the other five


def test_hint_relic_sweep_on_an_algorithm_without_rule_stops_before_running(tmp_path):
  with pytest.raises(ConfigError, match='supported: '):
    sw.sweep('cpu', ['bfs', 'segments_intersect'], ['baseline', 'hint_relic'], 1,
             str(tmp_path / 'grid'), overrides=TINY, progress=False)
  assert not os.path.exists(tmp_path / 'grid' / 'bfs')


def test_a_sweep_with_a_cell_that_cannot_fit_stops_before_running(tmp_path, monkeypatch):
  from nar import train as train_lib
  monkeypatch.setattr(train_lib, 'free_memory_bytes', lambda device=None: 4 * 2 ** 30)
  with pytest.raises(ConfigError, match='needs about .* GiB .*nearest settings that fit'):
    sw.sweep('cpu', ['bfs'], ['baseline'], 1, str(tmp_path / 'grid'), progress=False,
             overrides={**TINY, 'hidden': 50000})
  assert not os.path.exists(tmp_path / 'grid' / 'bfs')


def test_t_interval_matches_students_t():
  lo, hi = stats.t_interval([1.0, 2.0, 3.0])
  # mean 2, std 1, t(0.975, 2 dof) = 4.303: half-width 4.303 / sqrt(3)
  assert lo == pytest.approx(2 - 4.303 / 3 ** 0.5) and hi == pytest.approx(2 + 4.303 / 3 ** 0.5)
  assert stats.t_interval([5.0]) is None
  try:
    from scipy import stats as scipy_stats
  except ImportError:
    return
  xs = [0.3, -1.2, 2.5, 0.9, 1.1]
  ref = scipy_stats.t.interval(0.95, len(xs) - 1, loc=sum(xs) / len(xs),
                               scale=scipy_stats.sem(xs))
  assert stats.t_interval(xs) == pytest.approx(ref, abs=1e-3)


def _three_seeds_ten_points_apart(out, evaluations: bool = False) -> None:
  """bfs results of baseline and hint_relic, seeds 0-2, hint_relic 10 points ahead
  on every seed (and, with `evaluations`, at n = 16 and 128 too)."""
  for method, base in (('baseline', 0.5), ('hint_relic', 0.6)):
    for seed in (0, 1, 2):
      d = out / 'bfs' / method / f'seed{seed}'
      d.mkdir(parents=True)
      json.dump({'algorithm': 'bfs', 'method': method, 'seed': seed, 'test_size': 64,
                 'test_score': base + 0.01 * seed, 'best_val': {'score': 0.9, 'step': 5}},
                open(d / 'results.json', 'w'))
      if evaluations:
        json.dump({'16': {'score': base + 0.3}, '128': {'score': base - 0.2 - 0.01 * seed}},
                  open(d / 'evaluations.json', 'w'))


def test_a_comparison_of_an_incomplete_cell_is_never_a_claim(tmp_path):
  """Three of the five seeds a grid asks for: the interval and its adjusted p
  are shown, but no claim is made from a partial cell."""
  out = tmp_path / 'g'
  _three_seeds_ten_points_apart(out)
  sw.record_grid(str(out), 'mid', ['bfs'], ['baseline', 'hint_relic'], 5)
  text = report(str(out), plots=False)
  row = next(line for line in text.splitlines() if line.startswith('| bfs |') and '(3)' in line)
  assert '*incomplete*' in row
  assert not [line for line in text.splitlines() if line.startswith('| bfs') and '**claim**' in line]
  assert row.rstrip().endswith('Holm<1e-4 (incomplete cell: no claim)‡ |')
  assert '(0 of 1)' in text


def test_report_shows_paired_intervals_and_ood_against_test_size(tmp_path):
  out = tmp_path / 'g'
  _three_seeds_ten_points_apart(out, evaluations=True)
  text = report(str(out), plots=True)
  row = next(line for line in text.splitlines() if line.startswith('| bfs |') and '(3)' in line)
  # Every seed exactly +10 points: interval of zero width.
  # p of a constant difference is 0; the runs record no code version: marked.
  assert row.rstrip().endswith('| +10.00 [+10.00, +10.00] (ahead on 3/3) p<1e-4, Holm<1e-4 **claim**‡ |')
  size_rows = [line for line in text.splitlines() if line.startswith('| bfs | ')
               and line.split('|')[2].strip().isdigit()]
  assert [int(line.split('|')[2]) for line in size_rows] == [16, 64, 128]
  assert ('| bfs | 128 | 29.00 +- 1.00 (3) | 39.00 +- 1.00 (3) | +10.00 [+10.00, +10.00] p<1e-4, '
          'Holm<1e-4 **claim**‡ |') in text
  assert 'the family is every paired comparison this report shows' in text and '(3 intervals' in text
  assert (out / 'ood_vs_size.png').exists() and 'ood_vs_size.png' in text
  assert 'Against the variants of the baseline' not in text      # no control, no ablation
  # A report written elsewhere puts its plots beside it (its links are relative),
  # and leaves the ones in the results directory alone.
  before = (out / 'ood_vs_size.png').stat().st_mtime_ns
  elsewhere = tmp_path / 'review' / 'report.md'
  report(str(out), str(elsewhere), plots=True)
  assert {'ood_scores.png', 'validation_curves.png', 'ood_vs_size.png'} <= set(
      os.listdir(tmp_path / 'review'))
  assert (out / 'ood_vs_size.png').stat().st_mtime_ns == before


def test_report_compares_each_method_with_the_baselines_variants(tmp_path):
  """A sample-matched control (a `--vary` column of the baseline) gets its own paired
  differences: the method's gain over the control, not only over the baseline."""
  out = tmp_path / 'g'
  for method, base in (('baseline', 0.5), ('baseline@batch_size=64', 0.55), ('hint_relic', 0.6)):
    for seed in (0, 1, 2):
      d = out / 'bfs' / method / f'seed{seed}'
      d.mkdir(parents=True)
      json.dump({'algorithm': 'bfs', 'method': method.split('@')[0], 'seed': seed,
                 'test_size': 64, 'test_score': base + 0.01 * seed * (method == 'hint_relic'),
                 'best_val': {'score': 0.9, 'step': 5}}, open(d / 'results.json', 'w'))
  d = out / 'dfs' / 'hint_relic' / 'seed0'          # no control run: no row
  d.mkdir(parents=True)
  json.dump({'algorithm': 'dfs', 'method': 'hint_relic', 'seed': 0, 'test_size': 64,
             'test_score': 0.3, 'best_val': {'score': 0.9, 'step': 5}}, open(d / 'results.json', 'w'))
  lines = report(str(out), plots=False).splitlines()
  head = lines.index('| algorithm | hint_relic - baseline@batch_size=64 |')
  assert lines[head + 2] == '| bfs | +6.00 [+3.52, +8.48] (ahead on 3/3) p=0.0091, Holm=0.0091 **claim**‡ |'
  assert not lines[head + 3].startswith('| dfs')


def test_report_compares_a_method_with_its_ablations(tmp_path):
  """An ablation (a method registered as another's target with fixed settings:
  twins_only is hint_relic without the contrast) gets the full method's paired
  difference against it; a method of another target (baseline) is no ablation."""
  out = tmp_path / 'g'
  for method, base in (('baseline', 0.5), ('twins_only', 0.58), ('hint_relic', 0.6)):
    for seed in (0, 1, 2):
      d = out / 'bfs' / method / f'seed{seed}'
      d.mkdir(parents=True)
      json.dump({'algorithm': 'bfs', 'method': method, 'seed': seed, 'test_size': 64,
                 'test_score': base + 0.01 * seed * (method == 'hint_relic'),
                 'best_val': {'score': 0.9, 'step': 5}}, open(d / 'results.json', 'w'))
  lines = report(str(out), plots=False).splitlines()
  head = lines.index('| algorithm | hint_relic - twins_only |')
  assert lines[head + 2] == '| bfs | +3.00 [+0.52, +5.48] (ahead on 3/3) p=0.035, Holm=0.035 **claim**‡ |'
  for seed in (0, 1, 2):              # evaluated at a second size: the curve table pairs them too
    for method in ('baseline', 'twins_only', 'hint_relic'):
      json.dump({'32': {'score': 0.7 + 0.05 * (method == 'hint_relic')}},
                open(out / 'bfs' / method / f'seed{seed}' / 'evaluations.json', 'w'))
  text = report(str(out), plots=False)
  assert ('| algorithm | n | baseline | hint_relic | twins_only | hint_relic - baseline | '
          'twins_only - baseline | hint_relic - twins_only |') in text
  assert ('| bfs | 32 | 70.00 +- 0.00 (3) | 75.00 +- 0.00 (3) | 70.00 +- 0.00 (3) | +5.00 [+5.00, '
          '+5.00] p<1e-4, Holm<1e-4 **claim**‡ | +0.00 [+0.00, +0.00] p=1, Holm=1‡ | +5.00 [+5.00, '
          '+5.00] p<1e-4, Holm<1e-4 **claim**‡ |') in text
  assert scores._comparison_pairs(['baseline', 'hint_relic']) == []
  assert scores._comparison_pairs(['baseline', 'baseline@batch_size=64', 'hint_relic',
                                   'twins_only']) == [
      ('hint_relic', 'baseline@batch_size=64'), ('twins_only', 'baseline@batch_size=64'),
      ('hint_relic', 'twins_only')]


def _fake_runs(monkeypatch, leader_validates=True):
  """A stand-in for `_run_in_subprocess`: records when each run starts; the seed-0
  run of a group writes a validation record (as a run does once it has compiled)."""
  import threading
  import time
  events, lock = [], threading.Lock()

  def fake_run(config):
    with lock:
      events.append(('start', config.out))
    if config.seed == 0:
      time.sleep(0.3)
      if leader_validates:
        os.makedirs(config.out, exist_ok=True)
        with open(os.path.join(config.out, 'metrics.jsonl'), 'a') as f:
          f.write(json.dumps({'kind': 'val', 'step': 1, 'score': 0.5}) + '\n')
        with lock:
          events.append(('validated', config.out))
      time.sleep(0.3)
      if not leader_validates:
        with lock:
          events.append(('ended', config.out))
        return config.out, 'FAILED (exit code 1; see train.log)'
    return config.out, 'done, OOD 1.0000'
  monkeypatch.setattr(runner, '_run_in_subprocess', fake_run)
  monkeypatch.setattr(runner, '_POLL_S', 0.05)
  monkeypatch.delenv('NAR_COMPILE_CACHE', raising=False)
  return events


def test_parallel_sweep_lets_the_first_run_of_a_configuration_compile_before_its_other_seeds(
    tmp_path, monkeypatch):
  events = _fake_runs(monkeypatch)
  out = str(tmp_path / 'grid')
  done = dict(sw.sweep('cpu', ['bfs', 'dfs'], ['baseline'], 3, out, workers=6, overrides=TINY,
                       progress=False))
  assert len(done) == 6 and all(v.startswith('done') for v in done.values())
  for algorithm in ('bfs', 'dfs'):
    leader = sw.run_dir(out, algorithm, 'baseline', 0)
    validated = events.index(('validated', leader))
    for seed in (1, 2):
      # Its other seeds start only once it has validated (compiled), not before...
      assert events.index(('start', sw.run_dir(out, algorithm, 'baseline', seed))) > validated
  # ...while the other configuration's first run starts at once beside it.
  assert events[:2] == [('start', sw.run_dir(out, 'bfs', 'baseline', 0)),
                        ('start', sw.run_dir(out, 'dfs', 'baseline', 0))]


def test_followers_start_when_their_leader_fails_and_warmup_can_be_turned_off(
    tmp_path, monkeypatch):
  events = _fake_runs(monkeypatch, leader_validates=False)
  out = str(tmp_path / 'grid')
  done = dict(sw.sweep('cpu', ['bfs'], ['baseline'], 3, out, workers=3, overrides=TINY,
                       progress=False))
  assert sorted(v.split(' ')[0] for v in done.values()) == ['FAILED', 'done,', 'done,']
  leader = sw.run_dir(out, 'bfs', 'baseline', 0)
  assert events.index(('start', sw.run_dir(out, 'bfs', 'baseline', 1))) > events.index(
      ('ended', leader))
  events.clear()
  out = str(tmp_path / 'grid2')
  sw.sweep('cpu', ['bfs'], ['baseline'], 3, out, workers=3, overrides=TINY, progress=False,
           compile_warmup=False)
  assert [e for e, _ in events[:3]] == ['start'] * 3     # all at once


def test_compile_signature_ignores_seed_and_execution_settings_only():
  make = lambda seed, **kw: sw.make_config('mid', 'insertion_sort', 'hint_relic', seed, '/tmp/g',
                                           kw)
  assert runner.compile_signature(make(0)) == runner.compile_signature(
      make(3, sampling_processes=2))
  assert runner.compile_signature(make(0)) != runner.compile_signature(make(0, hidden=32))
  assert runner.compile_signature(make(0)) != runner.compile_signature(
      sw.make_config('mid', 'insertion_sort', 'baseline', 0, '/tmp/g', {}))


def test_parallel_sweep_shows_a_bar_over_its_runs(tmp_path, monkeypatch, capsys):
  _fake_runs(monkeypatch)
  out = str(tmp_path / 'grid')
  sw.sweep('cpu', ['bfs'], ['baseline'], 3, out, workers=3, overrides=TINY, progress=True)
  captured = capsys.readouterr()
  assert 'sweep: 100%' in captured.err and '3/3' in captured.err
  assert captured.out.count('[sweep] ') == 4      # the count line and one line per run


@pytest.mark.parametrize('workers', [0, -3])
def test_sweep_refuses_a_worker_count_below_one_before_running(tmp_path, workers):
  with pytest.raises(ConfigError, match='--workers must be a positive integer'):
    sw.sweep('cpu', ['bfs'], ['baseline'], 1, str(tmp_path / 'grid'), workers=workers,
             overrides=TINY, progress=False)
  assert not os.path.exists(tmp_path / 'grid')


def test_report_says_a_one_seed_difference_has_no_interval(tmp_path):
  out = tmp_path / 'g'
  for method, score in (('baseline', 0.5), ('hint_relic', 0.7)):
    d = out / 'bfs' / method / 'seed0'
    d.mkdir(parents=True)
    json.dump({'algorithm': 'bfs', 'method': method, 'seed': 0, 'test_size': 64,
               'test_score': score, 'best_val': {'score': 0.9, 'step': 5}},
              open(d / 'results.json', 'w'))
  text = report(str(out), plots=False)
  row = next(line for line in text.splitlines() if line.startswith('| bfs |') and '(1)' in line)
  assert row.rstrip().endswith('| +20.00 [no interval: 1 seed] (ahead on 1/1)‡ |')
