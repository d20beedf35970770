"""dm-clrs interoperability: its parameter files read here, ours written in its format.

dm-clrs's `BaselineModel.save_model` pickles `{'params': ..., 'opt_state': ...}`;
`restore_model` merges the params into its model and takes the optimizer state.
Our network has dm-clrs's parameter tree (tests/test_model.py), so a file moves
either way as is. A pickle can run code when loaded: read only files you trust.
"""

from __future__ import annotations

import os
import pickle
from typing import Optional

import jax
import numpy as np

from nar import checkpoint as ckpt
from nar import storage
from nar.config import ConfigError, TrainConfig, load_config_file
from nar.errors import RunError


def load_dm_clrs_params(path: str) -> dict:
  """The `params` of a file written by dm-clrs's `BaselineModel.save_model`."""
  try:
    with open(path, 'rb') as f:
      state = pickle.load(f)
  except OSError as e:
    raise RunError(f'cannot read {path}: {e.strerror}') from e
  except Exception as e:  # pylint: disable=broad-except  (any unpickling failure)
    raise RunError(f'{path} is not a dm-clrs parameter file (pickle): {e}') from e
  if not isinstance(state, dict) or not isinstance(state.get('params'), dict):
    raise RunError(f"{path} is not a dm-clrs parameter file: no 'params' mapping in it")
  return {m: {k: np.asarray(v) for k, v in leaves.items()}
          for m, leaves in state['params'].items()}


def write_dm_clrs_params(path: str, params: dict, opt_state) -> None:
  """Writes `{'params', 'opt_state'}` as `BaselineModel.save_model` does
  (replacing `path` atomically)."""
  state = {'params': jax.device_get(params), 'opt_state': jax.device_get(opt_state)}
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  storage.atomic_write(path, pickle.dumps(state))


def hidden_size_of(params: dict) -> int:
  """The network width of a dm-clrs parameter tree (the encoders' output size)."""
  for module, leaves in params.items():
    if module.endswith('_enc_linear') and 'w' in leaves:
      return int(leaves['w'].shape[-1])
  raise RunError('no encoder found in the parameters: not a dm-clrs network')


def _network(config: TrainConfig):
  from nar import methods
  from nar.sample import processed_spec
  from nar.train import build_network
  from nar.train import init_network
  if config.multi_task:    # dm-clrs's names already: algo_i_ is the i-th algorithm of the run
    specs = [processed_spec(a) for a in config.algorithms]
    examples = [methods.get(c, sp).example_batch()
                for c, sp in zip(methods.task_configs(config), specs)]
    net = build_network(config, specs, examples)
    template = jax.eval_shape(lambda: init_network(net, jax.random.PRNGKey(0), examples))
    return specs, net, template
  spec = processed_spec(config.algorithm)
  example = methods.get(config, spec).example_batch()
  net = build_network(config, spec, example)
  template = net.init(jax.random.PRNGKey(0), example.inputs, example.hints, example.lengths,
                      example.node_mask, is_training=False)
  return spec, net, template


def export_run(run_dir: str, path: str) -> dict:
  """Writes the best checkpoint of a run as a dm-clrs parameter file (its
  optimizer state is a fresh one: the best checkpoint keeps parameters only)."""
  from nar.train import make_optimizer
  config_path = os.path.join(run_dir, 'config.json')
  if not os.path.exists(config_path):
    raise RunError(f'{run_dir} is not a run directory (no config.json)')
  config = TrainConfig.from_json(load_config_file(config_path))
  best = os.path.join(run_dir, 'checkpoints', 'best')
  if not os.path.isdir(best):
    raise RunError(f'{run_dir} has no best checkpoint yet (checkpoints/best)')
  _, _, template = _network(config)
  try:
    params, meta = ckpt.load(best, template)
  except ckpt.CheckpointError as e:
    raise RunError(str(e)) from e
  write_dm_clrs_params(path, params, make_optimizer(config).init(params))
  return {'run': run_dir, 'file': path, 'algorithm': config.algorithm,
          'checkpoint_step': meta['step']}


def evaluate_params(params: dict, algorithm: str, *, size: int = 64, processor: str = 'triplet_gmpnn',
                    num_samples: Optional[int] = None, batch_size: int = 32,
                    cache_dir: Optional[str] = None, progress: bool = False) -> dict:
  """`clrs.evaluate` scores of a dm-clrs parameter tree on the test split of
  `algorithm` at `size` (the CLRS-30 split at 64)."""
  from nar import data as data_lib
  from nar.train import evaluate_split, make_predict
  config = TrainConfig(algorithm=algorithm, hidden=hidden_size_of(params), processor=processor,
                       cache_dir=cache_dir).validate()
  spec, net, template = _network(config)
  if jax.tree_util.tree_structure(template) != jax.tree_util.tree_structure(params):
    ours, theirs = set(template), set(params)
    raise ConfigError(
        f'the parameters are not a {processor} network for {algorithm}: '
        f'missing {sorted(ours - theirs)[:3]}, unexpected {sorted(theirs - ours)[:3]}')
  for module, leaves in template.items():
    for k, v in leaves.items():
      if np.shape(params[module][k]) != np.shape(v):
        raise ConfigError(f'parameter {module}/{k} has shape {np.shape(params[module][k])}, '
                          f'this {algorithm} network needs {np.shape(v)}')
  split = data_lib.load_split(algorithm, 'test', size=size, num_samples=num_samples,
                              cache_dir=config.resolved_cache_dir(), progress=progress)
  scores = evaluate_split(make_predict(net, spec), params, split, spec, batch_size,
                          progress='evaluating' if progress else None, hidden=config.hidden)
  return {'algorithm': algorithm, 'size': size, 'hidden': config.hidden, **scores}
