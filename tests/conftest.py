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


def pytest_sessionfinish(session, exitstatus):
  if _OWN_COMPILE_CACHE and not hasattr(session.config, 'workerinput'):
    import shutil
    shutil.rmtree(_OWN_COMPILE_CACHE, ignore_errors=True)


import nar.clrs_import  # noqa: E402,F401  (quiet TensorFlow before any test imports dm-clrs)
