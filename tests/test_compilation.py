"""What a run compiles: programs compiled ahead of time are the jitted ones, the
compile log attributes cache hits, initialisation is one program with the same
values, and the progress line tells compiling from training."""

import io
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nar import compilation
from nar import model as model_lib
from nar import run_programs
from nar import train as train_module
from nar.compilation import CompileLog, Precompiler
from nar.config import TrainConfig
from nar.progress import TrainingBar


@jax.jit
def _f(x, y):
  return jnp.tanh(x @ y).sum(axis=0)


def test_precompiled_program_is_the_jitted_one_and_other_signatures_fall_back():
  precompiler = Precompiler(2)
  f = precompiler.wrap(_f)
  x = jnp.arange(12.0).reshape(3, 4)
  x2 = x[:2]
  y = np.ones((4, 5), np.float32)
  assert f.ready(x, y) is None                       # not asked for
  with CompileLog() as log:
    assert f.precompile(x, y) and not f.precompile(x, y)   # once per signature
    got = f(x, y)
    other = f(x2, y)                                 # another shape: compiled at its call
    again = _f(x, y)                                 # jit itself finds the program compiled
  np.testing.assert_array_equal(got, again)
  np.testing.assert_array_equal(other, _f(x2, y))
  assert f.ready(x, y) is True
  assert [c.name for c in log.programs()] == ['jit(_f)', 'jit(_f)']
  assert not f.precompile(x, 3.0)                    # not all arrays: nothing to compile
  precompiler.close()
  x1 = x[:1]
  assert not f.precompile(x1, y)                     # closed: compiled at the first call
  np.testing.assert_array_equal(f(x1, y), _f(x1, y))
  disabled = Precompiler(0).wrap(_f)
  assert not disabled.precompile(x, y)
  np.testing.assert_array_equal(disabled(x, y), _f(x, y))


def test_close_waits_for_the_compilations_under_way():
  """A closed precompiler leaves no thread compiling: what the process does
  next (another run, another test) never runs beside a finished run's compile."""
  started = threading.Event()

  @jax.jit
  def slow(x):
    started.set()                                    # traced on the pool's thread
    for _ in range(40):
      x = jnp.sin(x @ x.T) @ x
    return x
  precompiler = Precompiler(1)
  f = precompiler.wrap(slow)
  x = jnp.ones((8, 8))
  assert f.precompile(x)
  assert started.wait(60)
  precompiler.close()
  assert f.ready(x) is True                          # finished, not abandoned
  assert not [t for t in threading.enumerate() if t.name.startswith('nar-compile')]
  np.testing.assert_allclose(f(x), slow(x), rtol=1e-6)


def test_signature_tells_placement_and_shape_apart():
  x = jnp.ones((2, 3))
  placed = jax.device_put(x, jax.devices()[0])
  assert compilation.signature((x,)) == compilation.signature((np.ones((2, 3), np.float32),))
  assert compilation.signature((x,)) != compilation.signature((placed,))
  assert compilation.signature((x,)) != compilation.signature((jnp.ones((3, 2)),))
  abstract = jax.ShapeDtypeStruct((2, 3), jnp.float32, sharding=placed.sharding)
  assert compilation.signature((abstract,)) == compilation.signature((placed,))


def test_compile_log_attributes_cache_reads_to_the_program_of_the_same_thread():
  log = CompileLog().start()
  try:
    def other_thread():
      log._on_event(compilation._CACHE_HIT)
      log._on_duration(compilation._COMPILE, 0.5, fun_name='jit(b)')
    log._on_event(compilation._CACHE_WRITE)            # this thread's compilation is written
    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    log._on_duration(compilation._COMPILE, 2.0, fun_name='jit(a)')
    log._on_duration(compilation._COMPILE, 0.1, fun_name='jit(c)')
    log._on_duration(compilation._TRACE, 0.25, fun_name='a')
  finally:
    log.stop()
  assert [(c.name, c.source) for c in log.programs()] == [
      ('jit(b)', 'cache'), ('jit(a)', 'compiled'), ('jit(c)', 'uncached')]
  assert log.summary() == {'programs': 3, 'compile_s': 2.6, 'from_cache': 1, 'written': 1,
                           'trace_s': 0.25, 'lower_s': 0.0}
  text = log.describe()
  assert '3 XLA programs' in text and '1 from the persistent cache' in text
  assert '1 x jit(a) (2.0 s)' in text and '1 under 1 s' in text


def test_a_stopped_log_hears_nothing():
  log = CompileLog().start()
  log.stop()
  jax.jit(lambda x: x * 3.0)(jnp.ones(7))
  assert log.programs() == []


@pytest.mark.parametrize('algorithm,method,processor', [
    ('bfs', 'baseline', 'triplet_gmpnn'),
    ('insertion_sort', 'hint_relic', 'triplet_gmpnn'),
    ('bfs,dfs', 'baseline', 'triplet_gmpnn'),
    ('bfs', 'baseline', 'mpnn'),
])
def test_initialisation_without_the_forward_pass_and_as_one_program_gives_the_same_state(
    tmp_path, monkeypatch, algorithm, method, processor):
  """`init` stops once the parameters exist: op by op, the parameters are those
  of the whole forward pass (as before), bit for bit. As one jitted program
  (`RunModel.init_state`), the state is the same up to float rounding: XLA may
  fuse the initialisers' arithmetic differently from op-by-op programs (bit for
  bit under XLA's default optimisation, measured on bfs and insertion_sort;
  one element in 32 differs by one ulp at the level the tests compile with)."""
  config = TrainConfig(algorithm=algorithm, method=method, processor=processor, hidden=4,
                       batch_size=2, train_sizes=(4,), out=str(tmp_path / 'run'),
                       cache_dir=str(tmp_path / 'cache')).validate()
  model = train_module.build_run_model(config)
  optimizer = train_module.make_optimizer(config)
  key = jax.random.PRNGKey(5)
  jitted = model.init_state(key, optimizer)
  without_forward = model.init_params(key)
  monkeypatch.setattr(model_lib, 'INIT_RUNS_FORWARD', True)
  with_forward = model.init_params(key)
  assert jax.tree_util.tree_structure(without_forward) == jax.tree_util.tree_structure(
      with_forward)
  for a, b in zip(jax.tree_util.tree_leaves(without_forward),
                  jax.tree_util.tree_leaves(with_forward)):
    np.testing.assert_array_equal(a, b)
  eager = {'params': with_forward, 'opt_state': optimizer.init(with_forward)}
  assert jax.tree_util.tree_structure(jitted) == jax.tree_util.tree_structure(eager)
  for a, b in zip(jax.tree_util.tree_leaves(jitted), jax.tree_util.tree_leaves(eager)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------- progress line
def _bar(total=10, initial=0):
  out = io.StringIO()
  return TrainingBar('bfs', total, initial=initial, file=out, mininterval=0), out


def _last_line(out: io.StringIO) -> str:
  return out.getvalue().replace('\n', '\r').split('\r')[-2 if out.getvalue().endswith('\n')
                                                        else -1]


def test_progress_says_compiling_without_rate_or_eta_until_steady_steps_exist():
  bar, out = _bar()
  bar.compiling(True)
  assert 'compiling' in _last_line(out) and 'ETA' not in out.getvalue()
  bar.step(30.0, steady=False, loss=2.5)            # a program's first run: not a rate
  line = _last_line(out)
  assert 'compiling' in line and 'ETA' not in line and 'step/s' not in line
  assert 'loss=2.500' in line and 'val' not in line and 'inf' not in line
  bar.step(0.5, steady=True, loss=2.0)
  bar.step(0.5, steady=True, loss=1.5)
  line = _last_line(out)
  # The steady steps alone set the rate (2 step/s) and the ETA (7 steps left).
  assert '2.00 step/s' in line and 'ETA 00:04' in line and 'compiling' not in line
  bar.compiling(True)                               # a later shape compiles: said at once
  assert 'compiling' in _last_line(out) and 'ETA' not in _last_line(out)
  bar.step(20.0, steady=False, loss=1.0)
  bar.validated(0.75)
  bar.step(0.5, steady=True, loss=0.9)
  line = _last_line(out)
  assert 'val=0.750' in line and 'ETA 00:03' in line
  bar.close()
  assert '-inf' not in out.getvalue() and 'val=' not in out.getvalue().split('val=0.750')[0]


def test_progress_time_ticks_while_a_program_compiles():
  out = io.StringIO()
  bar = TrainingBar('bfs', 5, file=out, mininterval=0)
  bar._tick_s = 0.05                               # redraw every 50 ms instead of every second
  bar.compiling(True)
  before = out.getvalue().count('compiling')
  threading.Event().wait(0.5)
  assert out.getvalue().count('compiling') >= before + 3
  bar.close()


def test_a_second_run_of_a_configuration_in_the_process_traces_nothing_again(tmp_path):
  """The seeds of an in-process sweep, or the tests: the jitted programs of the
  first run are reused (same trace, same executables); a setting that reaches
  the traced step (the learning rate) gets its own."""
  def config(out, seed, **kw):
    return TrainConfig(algorithm='bfs', steps=2, hidden=4, batch_size=4, eval_every=2,
                       train_sizes=(4,), val_samples=2, test_samples=2, test_size=5,
                       eval_batch_size=4, out=str(tmp_path / out), seed=seed,
                       cache_dir=str(tmp_path / 'cache'), **kw).validate()
  with CompileLog() as first:
    train_module.train(config('a', 1), progress=False)
  with CompileLog() as log:
    again = train_module.train(config('b', 3), progress=False)
  # What is left: JAX's own small helpers (a key's fold-in), traced once a process.
  assert log.trace_s < 0.05 * first.trace_s
  assert [c for c in log.programs() if c.seconds >= 0.5] == []
  assert again['timings']['compile_programs'] == len(log.programs())
  with CompileLog() as log:
    train_module.train(config('c', 1, learning_rate=0.01), progress=False)
  assert log.trace_s > 0                     # the optimizer's rate is traced into the step


def test_another_process_reads_the_traced_programs_and_trains_the_same(tmp_path, monkeypatch):
  """The store beside the compilation cache: a run of the same configuration in
  a new process (here: this one with its in-process programs forgotten) traces
  nothing, and its programs train to the same parameters bit for bit. A torn
  entry is traced again."""
  import os

  def config(out):
    return TrainConfig(algorithm='bfs', steps=2, hidden=4, batch_size=4, eval_every=2,
                       train_sizes=(4,), val_samples=4, test_samples=4, test_size=5,
                       eval_batch_size=4, out=str(tmp_path / out), seed=1,
                       cache_dir=str(tmp_path / 'cache')).validate()

  monkeypatch.setenv('NAR_COMPILE_CACHE', str(tmp_path / 'xla'))    # this test's own
  run_programs.forget_compiled()
  first = train_module.train(config('a'), progress=False)
  store = str(tmp_path / 'xla' / 'traced')
  entries = sorted(os.listdir(store))
  assert [e.split('-')[0] for e in entries] == ['init', 'predict0', 'predict0', 'update0']
  written = {e: os.stat(os.path.join(store, e)).st_mtime_ns for e in entries}
  run_programs.forget_compiled()
  with CompileLog() as log:
    again = train_module.train(config('b'), progress=False)
  # Nothing traced and exported again (the entries untouched), and the store's
  # programs read from the compilation cache, not compiled (counted, not timed:
  # a loaded machine makes any time threshold flaky).
  assert {e: os.stat(os.path.join(store, e)).st_mtime_ns for e in os.listdir(store)} == written
  stored = [c for c in log.programs() if c.name.split('(')[-1].rstrip(')') in (
      'init', 'update0', 'predict0')]
  assert stored and all(c.source == 'cache' for c in stored), log.programs()
  assert again['test'] == first['test']
  a, b = (np.load(next(iter(sorted((tmp_path / r / 'checkpoints').glob('step-*')))) / 'state.npz')
          for r in ('a', 'b'))
  for k in a.files:
    np.testing.assert_array_equal(a[k], b[k])
  update = os.path.join(store, entries[-1])
  with open(update, 'r+b') as f:
    f.truncate(100)
  run_programs.forget_compiled()
  with CompileLog() as log:
    train_module.train(config('c'), progress=False)
  assert log.trace_s > 0 and os.path.getsize(update) > 100
