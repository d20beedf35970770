"""dm-clrs interoperability: its parameter files read here, ours written in its format.

dm-clrs's `BaselineModel.save_model` pickles `{'params': ..., 'opt_state': ...}`;
`restore_model` merges the params into its model and takes the optimizer state.
Our network has dm-clrs's parameter tree (tests/test_model.py), one algorithm's
or several's (a multi-spec `BaselineModel`: the encoders and decoders of
algorithm i are `algo_{i}_...`, the processor is shared; tests/test_multitask.py),
so a file moves either way as is. `nar export` adds a `nar` entry (the run's
configuration), which dm-clrs ignores and `nar evaluate --dm-clrs-params` reads
the algorithms and the network from. A pickle can run code when loaded: read
only files you trust.

Reading and checking a file needs no JAX (`read_dm_clrs_file`): a file that is
not what it should be is refused in one line before anything is built.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from nar import storage
from nar.config import ConfigError, TrainConfig, load_config_file
from nar.errors import RunError

# The key `nar export` adds beside dm-clrs's two: {'format': 1, 'config': the run's
# configuration, 'checkpoint_step': the exported step}.
NAR_KEY = 'nar'
NAR_FORMAT = 1
_ALGO = re.compile(r'(?:^|/)algo_(\d+)_')


@dataclasses.dataclass
class DmClrsFile:
  """A dm-clrs parameter file, checked.

  Attributes:
    params: module name -> {parameter name -> numeric array}.
    algorithms: how many algorithms its encoders and decoders are for (algo_0..).
    config: the configuration `nar export` recorded (None for dm-clrs's own files).
    checkpoint_step: the step `nar export` recorded (None for dm-clrs's own files).
  """
  params: dict
  algorithms: int
  config: Optional[TrainConfig] = None
  checkpoint_step: Optional[int] = None


def _describe(x) -> str:
  text = repr(x)
  return text if len(text) <= 40 else text[:37] + '...'


def read_dm_clrs_file(path: str) -> DmClrsFile:
  """The content of a file written by `BaselineModel.save_model` or `nar export`,
  checked in full: a mapping with `params`, a mapping of module names to
  mappings of parameter names to numeric arrays, encoders and decoders named
  for algorithms 0..A-1, and (`nar export`) a valid configuration.

  Raises:
    RunError: one line naming the file and what is wrong in it.
  """
  try:
    with open(path, 'rb') as f:
      state = pickle.load(f)
  except OSError as e:
    raise RunError(f'cannot read {path}: {storage.cause(e)}') from e
  except Exception as e:  # pylint: disable=broad-except  (any unpickling failure)
    raise RunError(f'{path} is not a dm-clrs parameter file (pickle): '
                   f'{e.__class__.__name__}: {e}') from e

  def refuse(why: str) -> RunError:
    return RunError(f'{path} is not a dm-clrs parameter file: {why}')

  if not isinstance(state, Mapping) or not isinstance(state.get('params'), Mapping):
    raise refuse("no 'params' mapping in it")
  if not state['params']:
    raise refuse("its 'params' are empty")
  params = {}
  for module, leaves in state['params'].items():
    if not isinstance(module, str) or not module:
      raise refuse(f'a module name is {_describe(module)}, not a name')
    if not isinstance(leaves, Mapping) or not leaves:
      raise refuse(f'module {module} holds {_describe(leaves)}, not a mapping of parameters')
    params[module] = {}
    for name, value in leaves.items():
      try:
        array = np.asarray(value)
      except Exception:  # pylint: disable=broad-except  (an object numpy cannot take)
        array = None
      if (not isinstance(name, str) or array is None or array.dtype.kind not in 'fiub'
          or array.size == 0):
        raise refuse(f'{module}/{name} is {_describe(value)}, not a numeric array')
      params[module][name] = array
  indices = sorted({int(m.group(1)) for m in map(_ALGO.search, params) if m})
  if not indices:
    raise refuse('no encoder or decoder of an algorithm (algo_0_...) in it')
  if indices != list(range(len(indices))):
    raise refuse(f'its algorithms are numbered {indices}, not 0..{len(indices) - 1}')
  config, step = None, None
  if NAR_KEY in state:
    meta = state[NAR_KEY]
    if not isinstance(meta, Mapping) or meta.get('format') != NAR_FORMAT:
      raise refuse(f"its '{NAR_KEY}' entry is not one `nar export` writes")
    try:
      config = TrainConfig.from_json(dict(meta.get('config') or {}))
    except (ConfigError, TypeError, ValueError) as e:
      raise refuse(f"the configuration in its '{NAR_KEY}' entry: {e}") from e
    step = meta.get('checkpoint_step')
    if len(config.algorithms) != len(indices):
      raise refuse(f'its configuration names {len(config.algorithms)} algorithm(s), its '
                   f'parameters are of {len(indices)}')
  return DmClrsFile(params, len(indices), config, step)


def load_dm_clrs_params(path: str) -> dict:
  """The `params` of a file written by dm-clrs's `BaselineModel.save_model` (or
  `nar export`), checked (`read_dm_clrs_file`)."""
  return read_dm_clrs_file(path).params


def write_dm_clrs_params(path: str, params: dict, opt_state,
                         nar_entry: Optional[dict] = None) -> None:
  """Writes `{'params', 'opt_state'}` as `BaselineModel.save_model` does
  (replacing `path` atomically), with `nar_entry` under 'nar' if given."""
  import jax
  state = {'params': jax.device_get(params), 'opt_state': jax.device_get(opt_state)}
  if nar_entry is not None:
    state[NAR_KEY] = nar_entry
  try:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  except OSError as e:
    raise storage.storage_error(os.path.dirname(os.path.abspath(path)), e, 'create') from e
  storage.atomic_write(path, pickle.dumps(state))


def hidden_size_of(params: dict) -> int:
  """The network width of a dm-clrs parameter tree (the encoders' output size)."""
  for module, leaves in params.items():
    if module.endswith('_enc_linear') and 'w' in leaves and np.ndim(leaves['w']) == 2:
      return int(leaves['w'].shape[-1])
  raise RunError('no encoder found in the parameters: not a dm-clrs network')


def network_template(model) -> dict:
  """The shapes of the parameters of a run's network alone (dm-clrs's tree:
  no method's own parameters, such as Hint-ReLIC's critics), traced only."""
  import jax
  from nar.run_model import init_network
  key = jax.random.PRNGKey(0)
  if model.multi_task:
    return jax.eval_shape(lambda: init_network(model.net, key, model.examples))
  e = model.examples[0]
  return jax.eval_shape(lambda: model.net.init(key, e.inputs, e.hints, e.lengths, e.node_mask,
                                               is_training=False))


def export_run(run_dir: str, path: str) -> dict:
  """Writes the best checkpoint of a run (one algorithm or several) as a dm-clrs
  parameter file: the network's parameters (a method's own, e.g. Hint-ReLIC's
  critics, are left out: dm-clrs has no use for them), a fresh optimizer state
  (the best checkpoint keeps parameters only) and the run's configuration."""
  from nar import checkpoint as ckpt
  from nar.run_model import build_run_model, make_optimizer
  config_path = os.path.join(run_dir, 'config.json')
  if not os.path.exists(config_path):
    raise RunError(f'{run_dir} is not a run directory (no config.json)')
  config = TrainConfig.from_json(load_config_file(config_path))
  best = os.path.join(run_dir, 'checkpoints', 'best')
  if not os.path.isdir(best):
    raise RunError(f'{run_dir} has no best checkpoint yet (checkpoints/best)')
  model = build_run_model(config)
  template = model.state_template(make_optimizer(config))['params']
  try:
    params, meta = ckpt.load(best, template)
  except ckpt.CheckpointError as e:
    raise RunError(str(e)) from e
  params = {m: params[m] for m in network_template(model)}
  entry = {'format': NAR_FORMAT, 'config': config.to_json(), 'checkpoint_step': meta['step']}
  write_dm_clrs_params(path, params, make_optimizer(config).init(params), entry)
  return {'run': run_dir, 'file': path, 'algorithm': config.algorithm,
          'checkpoint_step': meta['step']}


def file_config(file: DmClrsFile, algorithms: Optional[Sequence[str]], processor: Optional[str],
                cache_dir: Optional[str] = None) -> TrainConfig:
  """The network configuration a file is evaluated with: the one `nar export`
  recorded, else the given algorithms (in the file's algo_i order) and processor
  at the file's width. Checks needing no JAX: the count of algorithms.

  Raises:
    ConfigError: no algorithms where the file does not name them, a count or
      names other than the file's.
  """
  if file.config is not None:
    named = file.config.algorithms
    if algorithms and tuple(algorithms) != named:
      raise ConfigError(f'the file holds {", ".join(named)} (as exported); --algorithms names '
                        f'{", ".join(algorithms)}')
    if processor and processor != file.config.processor:
      raise ConfigError(f'the file holds a {file.config.processor} network (as exported); '
                        f'--processor names {processor}')
    return dataclasses.replace(file.config, cache_dir=cache_dir, method='baseline',
                               out='runs/default')
  if not algorithms:
    raise ConfigError(f'name the algorithms of this dm-clrs file with --algorithms, in its '
                      f'order (algo_0 first): it holds {file.algorithms}')
  if len(algorithms) != file.algorithms:
    raise ConfigError(f'the file holds parameters of {file.algorithms} algorithm(s) (algo_0..'
                      f'algo_{file.algorithms - 1}); --algorithms names {len(algorithms)}: '
                      f'{", ".join(algorithms)}')
  return TrainConfig(algorithm=','.join(algorithms), hidden=hidden_size_of(file.params),
                     processor=processor or 'triplet_gmpnn', cache_dir=cache_dir).validate()


def evaluate_params(params: Union[dict, DmClrsFile], algorithm: Union[str, Sequence[str], None]
                    = None, *, size: int = 64, processor: Optional[str] = None,
                    num_samples: Optional[int] = None, batch_size: int = 32,
                    cache_dir: Optional[str] = None, progress: bool = False) -> dict:
  """`clrs.evaluate` scores of a dm-clrs parameter tree on the test split of each
  of its algorithms at `size` (the CLRS-30 split at 64).

  Args:
    params: a parameter tree, or a `read_dm_clrs_file` (whose recorded
      configuration, if any, names the algorithms and the network).
    algorithm: a name, or the names in the file's algo_i order (None: the file's own).
    processor: the processor kind (None: the file's own, else triplet_gmpnn).
  Returns:
    One algorithm: {'algorithm', 'size', 'hidden', 'score', <per-output scores>}.
    Several: {'algorithms', 'size', 'hidden', 'score' (their mean), 'per_algorithm':
    {name: {'score', 'scores'}}}, as `nar evaluate` of a multi-task run.
  """
  return evaluate_params_sizes(params, algorithm, [size], processor=processor,
                               num_samples=num_samples, batch_size=batch_size,
                               cache_dir=cache_dir, progress=progress)[0]


def evaluate_params_sizes(params: Union[dict, DmClrsFile],
                          algorithm: Union[str, Sequence[str], None], sizes: Sequence[int], *,
                          processor: Optional[str] = None, num_samples: Optional[int] = None,
                          batch_size: int = 32, cache_dir: Optional[str] = None,
                          progress: bool = False) -> list[dict]:
  """`evaluate_params` at each of `sizes` (the network is built once)."""
  import jax
  from nar import data as data_lib
  from nar.eval_run import evaluate_split
  from nar.run_model import build_run_model
  file = params if isinstance(params, DmClrsFile) else DmClrsFile(
      params, len({m.group(1) for m in map(_ALGO.search, params) if m}) or 1)
  names = [algorithm] if isinstance(algorithm, str) else list(algorithm or [])
  config = file_config(file, names, processor, cache_dir)
  model = build_run_model(config)
  template = network_template(model)
  ours, theirs = set(template), set(file.params)
  if ours != theirs:
    raise ConfigError(
        f'the parameters are not a {config.processor} network for {config.algorithm}: '
        f'missing {sorted(ours - theirs)[:3]}, unexpected {sorted(theirs - ours)[:3]}')
  for module, leaves in template.items():
    if set(leaves) != set(file.params[module]):
      raise ConfigError(f'module {module} holds {sorted(file.params[module])}, this '
                        f'{config.algorithm} network has {sorted(leaves)}')
    for k, v in leaves.items():
      if np.shape(file.params[module][k]) != np.shape(v):
        raise ConfigError(f'parameter {module}/{k} has shape {np.shape(file.params[module][k])}, '
                          f'this {config.algorithm} network needs {np.shape(v)}')
  tree = jax.tree_util.tree_map(lambda t, x: np.asarray(x, t.dtype), template, file.params)
  predicts = model.predicts()
  out = []
  for size in sizes:
    per = []
    for name, predict, spec in zip(model.names, predicts, model.specs):
      split = data_lib.load_split(name, 'test', size=size, num_samples=num_samples,
                                  cache_dir=config.resolved_cache_dir(), progress=progress)
      per.append(evaluate_split(predict, tree, split, spec, batch_size,
                                progress=f'evaluating {name} n={size}' if progress else None,
                                hidden=config.hidden))
    if not model.multi_task:
      out.append({'algorithm': model.names[0], 'size': size, 'hidden': config.hidden, **per[0]})
      continue
    out.append({'algorithms': list(model.names), 'size': size, 'hidden': config.hidden,
                'score': sum(x['score'] for x in per) / len(per),
                'per_algorithm': {a: {'score': x['score'],
                                      'scores': {k: v for k, v in x.items() if k != 'score'}}
                                  for a, x in zip(model.names, per)}})
  return out
