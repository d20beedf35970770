import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import nar.clrs_import  # noqa: E402,F401  (quiet TensorFlow before any test imports dm-clrs)
