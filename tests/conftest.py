import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# The suite's time goes mostly to XLA compiling many small programs; LLVM's
# cheapest optimisation level compiles them ~30% faster and computes the same
# values (no fast-math at any level). Subprocesses started by tests inherit it.
if '--xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_backend_optimization_level=0').strip()

# Every training test has its own cache_dir, so each would compile the same tiny
# programs again: one compilation cache for the whole session instead (xdist's
# workers inherit the variable from the controller, which loads this file first).
if 'NAR_COMPILE_CACHE' not in os.environ:
  import tempfile
  os.environ['NAR_COMPILE_CACHE'] = tempfile.mkdtemp(prefix='nar-tests-xla-')
  _OWN_COMPILE_CACHE = os.environ['NAR_COMPILE_CACHE']
else:
  _OWN_COMPILE_CACHE = None
# One cache per xdist worker (and the processes its tests start): with one cache
# for both, a worker died of a segmentation fault inside JAX's cache read
# (get_executable_and_time, tests/test_sweep.py, in CI and here; the entry it
# read is not known). Within a worker, runs still share what they compile.
if os.environ.get('PYTEST_XDIST_WORKER') and not os.environ.get('NAR_TEST_WORKER_CACHE'):
  os.environ['NAR_COMPILE_CACHE'] = os.path.join(os.environ['NAR_COMPILE_CACHE'],
                                                 os.environ['PYTEST_XDIST_WORKER'])
  os.environ['NAR_TEST_WORKER_CACHE'] = '1'


def pytest_sessionfinish(session, exitstatus):
  if _OWN_COMPILE_CACHE and not hasattr(session.config, 'workerinput'):
    import shutil
    shutil.rmtree(_OWN_COMPILE_CACHE, ignore_errors=True)


import nar.clrs_import  # noqa: E402,F401  (quiet TensorFlow before any test imports dm-clrs)


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _persistent_cache_only_inside_runs():
  """JAX's persistent compilation cache, once a run turned it on, would stay on
  for every later test of the worker. A worker died of a segmentation fault in
  JAX's read of an entry (`deserialize_executable`, in the eager forward passes
  of tests/test_run_py_settings.py, after training tests; in CI and here, not
  reproduced alone; the entry is not known): each test ends with the cache off,
  so only runs, which turn it on themselves, read and write it."""
  yield
  import jax
  from jax.experimental.compilation_cache import compilation_cache
  if jax.config.jax_compilation_cache_dir is not None:
    jax.config.update('jax_compilation_cache_dir', None)
    compilation_cache.reset_cache()


@pytest.fixture(autouse=True, scope='module')
def _compiled_programs_freed_between_modules():
  """A worker keeps what its runs compiled (`nar.run_programs._JITTED`, the
  program store's executables, JAX's jit caches) for the next run of the same
  configuration; across a whole suite that grew a worker to 9 GB here. Within a
  module runs share them; each module ends with them freed."""
  yield
  import jax
  from nar import run_programs
  run_programs.forget_compiled()
  jax.clear_caches()
