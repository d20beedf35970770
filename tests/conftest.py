import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# The suite's time goes mostly to XLA compiling many small programs; LLVM's
# cheapest optimisation level compiles them ~30% faster and computes the same
# values (no fast-math at any level). Subprocesses started by tests inherit it.
if '--xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_backend_optimization_level=0').strip()

import nar.clrs_import  # noqa: E402,F401  (quiet TensorFlow before any test imports dm-clrs)
