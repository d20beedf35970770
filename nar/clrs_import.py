"""Imported before dm-clrs: keeps TensorFlow (which dm-clrs imports) quiet and off
the accelerators, so that JAX alone owns them."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('CUDA_VISIBLE_DEVICES_FOR_TF', '')
try:  # TensorFlow must not grab GPU memory that JAX needs.
  import tensorflow as _tf  # noqa: F401
  _tf.config.set_visible_devices([], 'GPU')
except Exception:  # pylint: disable=broad-except
  pass

import absl.logging as _absl_logging  # noqa: E402

_absl_logging.set_verbosity(_absl_logging.ERROR)
