"""Hint-ReLIC (docs/method.md, section 3): supervised loss on the originals, plus
a ReLIC contrast and invariance penalty on the next-step representations of
valid step pairs of causally-equivalent twins.

    L = L_sup(x) + beta * L_sup(x') + lambda * (L_contrast + alpha * L_KL)

The paper's objective (the defaults): beta = 0 (the twins enter only through
the invariance term) and the twin side one processor step from the original's
state (`relic_twin='step'`). beta > 0 and rollout twins are our variants
(`hint_relic_supervised`, `twins_only`).

Pointer hints (per valid pair, per original node i with true next target j):
  anchor g(r_x(i, j)), positive g(r_x'(m(i), m(j))), negatives g(r_x'(m(i), u)) for
  every other real twin node u (added nodes included); softmax over u at
  temperature tau, cross-entropy at m(j); and symmetrically from the twin to the
  original (candidates v of x, target j). r is the pair feature the pointer
  decoder scores; g a small critic MLP followed by L2 normalisation.
Node-level state (mask, mask_one, categorical, scalar, and edge/graph hints, which
the node embeddings carry): the same contrast over node embeddings, node i of x
against all nodes of x' (target m(i)) and back; used on pairs valid for every
regularised non-pointer hint.
KL: alpha * KL(p_{x->x'} restricted to the original candidates || p_{x'->x}).

Cost: originals and twins go through the network as two batches, each padded
to its own size; the contrast uses at most `relic_pairs` valid pairs per twin
(sampled on the host), so its price stays small beside the twins' forward/backward
pass.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from nar import data as data_lib
from nar.batching import Batch
from nar.config import TrainConfig
from nar.layers import mlp_apply
from nar.losses import supervised_loss
from nar.methods import PART_PREFIX, Method
from nar.model import dense_data, make_step_net, nb_dims_of, net_config_of
from nar.processors import BIG

from clrs._src import specs as clrs_specs

_Type = clrs_specs.Type

class PairData(NamedTuple):
  """Selected valid step pairs, per twin k (twin k augments original k // K).

  t, t_twin: int `[BK, M]` original / twin transition index; mask `[BK, M]`
  float (1 = a real pair); pointer_valid: hint -> `[BK, M]` float; node_valid
  `[BK, M]` float; node_map int `[BK, N]` (original node -> twin node, 0 where
  the original node is padding)."""
  t: np.ndarray
  t_twin: np.ndarray
  mask: np.ndarray
  pointer_valid: dict
  node_valid: np.ndarray
  node_map: np.ndarray


def regularised_hints(spec: dict, which: str) -> tuple[list[str], list[str]]:
  """(pointer hints, other hints) the objective regularises."""
  hints = [k for k, v in spec.items() if v[0] == 'hint']
  if which != 'all':
    wanted = [h.strip() for h in which.split(',') if h.strip()]
    unknown = sorted(set(wanted) - set(hints))
    if unknown:
      raise ValueError(f"unknown hints {unknown}; this algorithm's hints: {', '.join(hints)}")
    hints = [h for h in hints if h in wanted]
  pointers = [h for h in hints if spec[h][1] == 'node' and spec[h][2] == _Type.POINTER]
  return pointers, [h for h in hints if h not in pointers]


def select_pairs(augmented: list, num_nodes: int, max_pairs: int,
                 pointer_hints: list[str], other_hints: list[str],
                 rng: np.random.Generator) -> PairData:
  """Host side: up to `max_pairs` pairs per twin, among pairs valid for at
  least one regularised hint."""
  bk = len(augmented)
  t = np.zeros((bk, max_pairs), np.int32)
  tt = np.zeros((bk, max_pairs), np.int32)
  mask = np.zeros((bk, max_pairs), np.float32)
  pv = {h: np.zeros((bk, max_pairs), np.float32) for h in pointer_hints}
  nv = np.zeros((bk, max_pairs), np.float32)
  node_map = np.zeros((bk, num_nodes), np.int32)
  for k, aug in enumerate(augmented):
    node_map[k, :len(aug.node_map)] = aug.node_map
    if len(aug.pairs) == 0:
      continue
    ptr_ok = {h: aug.hint_valid[h] for h in pointer_hints if h in aug.hint_valid}
    if other_hints:
      node_ok = np.logical_and.reduce([aug.hint_valid[h] for h in other_hints
                                       if h in aug.hint_valid])
    else:
      node_ok = np.zeros(len(aug.pairs), bool)
    useful = node_ok.copy()
    for v in ptr_ok.values():
      useful |= v
    idx = np.flatnonzero(useful)
    if len(idx) > max_pairs:
      idx = np.sort(rng.choice(idx, max_pairs, replace=False))
    m = len(idx)
    t[k, :m] = aug.pairs[idx, 0]
    tt[k, :m] = aug.pairs[idx, 1]
    mask[k, :m] = 1.0
    nv[k, :m] = node_ok[idx]
    for h, v in ptr_ok.items():
      pv[h][k, :m] = v[idx]
  return PairData(t, tt, mask, pv, nv, node_map)


CRITIC = 'relic_critic'


def is_critic(module: str) -> bool:
  """Whether a top-level parameter key is Hint-ReLIC critics' (any algorithm's)."""
  return module.split('/')[0].endswith(CRITIC)


class Critics(hk.Module):
  """g: two-layer MLPs to `out` dims, then L2 normalisation."""

  def __init__(self, hidden: int, out: int, name: str = 'relic_critic'):
    super().__init__(name=name)
    self.hidden, self.out = hidden, out

  def __call__(self, pair_size: int, node_size: int):
    from nar.layers import MLP
    return (MLP([self.hidden, self.out], name='pair_mlp').params(pair_size),
            MLP([self.hidden, self.out], name='node_mlp').params(node_size))


def _embed(layers, x):
  z = mlp_apply(layers, x)
  return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-6)


def _masked_log_softmax(logits, valid):
  return jax.nn.log_softmax(jnp.where(valid, logits, -BIG), axis=-1)


def contrast_terms(za: jax.Array, zb: jax.Array, anchor_a: jax.Array, anchor_b: jax.Array,
                   target_b: jax.Array, target_a: jax.Array, valid_a: jax.Array,
                   valid_b: jax.Array, cols_a_in_b: jax.Array, temperature: float):
  """Symmetric contrast + KL for one set of anchors.

  za: `[..., Na, D]` candidates from x; zb: `[..., Nb, D]` candidates from x';
  anchor_a / anchor_b: `[..., D]` anchors from x / x'; target_b: int `[...]` index
  of the positive among zb; target_a: among za; valid_a `[..., Na]`, valid_b
  `[..., Nb]` real candidates; cols_a_in_b int `[..., Na]`: where each x
  candidate sits among the x' candidates (the node map).
  Returns per-anchor (ce_x_to_x', ce_x'_to_x, kl), each `[...]`.
  """
  logits_ab = jnp.einsum('...d,...nd->...n', anchor_a, zb) / temperature
  logits_ba = jnp.einsum('...d,...nd->...n', anchor_b, za) / temperature
  logp_ab = _masked_log_softmax(logits_ab, valid_b)
  logp_ba = _masked_log_softmax(logits_ba, valid_a)
  ce_ab = -jnp.take_along_axis(logp_ab, target_b[..., None], -1)[..., 0]
  ce_ba = -jnp.take_along_axis(logp_ba, target_a[..., None], -1)[..., 0]
  # KL between the two directional distributions over the original candidates.
  restricted = jnp.take_along_axis(logits_ab, cols_a_in_b, -1)
  logq = _masked_log_softmax(restricted, valid_a)
  kl = jnp.sum(jnp.where(valid_a, jnp.exp(logq) * (logq - logp_ba), 0.0), -1)
  return ce_ab, ce_ba, kl


class TwinReps(NamedTuple):
  """Both sides' representations at the selected pairs, per twin k and pair slot m.

  node_x `[BK, M, N, D]`, node_y `[BK, M, N', D]` node embeddings (or None);
  pair_x / pair_y: pointer hint -> `[BK, M, N, N, H]` / `[BK, M, N', N', H]`
  pair features; mask_y `[BK, N']` the twins' real nodes."""
  node_x: Optional[jax.Array]
  node_y: Optional[jax.Array]
  pair_x: dict
  pair_y: dict
  mask_y: jax.Array


def rollout_reps(out_x, out_y, batch_y: Batch, pairs: PairData,
                 num_augmentations: int) -> TwinReps:
  """The representations of both rollouts at each pair's steps (t on x, t' on x')."""
  bk = pairs.t.shape[0]
  b_of = jnp.arange(bk) // num_augmentations
  rows = jnp.arange(bk)[:, None]
  node_x = node_y = None
  if out_x.node_reps is not None:
    node_x = out_x.node_reps[pairs.t, b_of[:, None]]
    node_y = out_y.node_reps[pairs.t_twin, rows]
  pair_x = {h: r[pairs.t, b_of[:, None]] for h, r in (out_x.pair_reps or {}).items()}
  pair_y = {h: r[pairs.t_twin, rows] for h, r in (out_y.pair_reps or {}).items()}
  return TwinReps(node_x, node_y, pair_x, pair_y, batch_y.node_mask)


def relic_loss(spec: dict, out_x, out_y, batch_x: Batch, batch_y: Batch, pairs: PairData,
               critics, num_augmentations: int, temperature: float):
  """(contrast, kl, anchor weight) of the rollouts `out_x`, `out_y` (`NetOutput`s
  with representations) at the selected pairs; see `pair_contrast`."""
  return pair_contrast(rollout_reps(out_x, out_y, batch_y, pairs, num_augmentations),
                       batch_x, pairs, critics, num_augmentations, temperature)


def pair_contrast(reps: TwinReps, batch_x: Batch, pairs: PairData, critics,
                  num_augmentations: int, temperature: float):
  """(contrast, kl) averaged over valid (pair, node) anchors, and the anchors'
  total weight; padding and invalid pairs contribute nothing."""
  pair_critic, node_critic = critics
  bk = pairs.t.shape[0]
  b_of = jnp.arange(bk) // num_augmentations
  n = batch_x.num_nodes
  mask_x = batch_x.node_mask[b_of][:, None, :] > 0.5                     # [BK, 1, N]
  mask_y = reps.mask_y[:, None, :] > 0.5                                 # [BK, 1, N']
  nmap = jnp.broadcast_to(pairs.node_map[:, None, :], pairs.t.shape + (n,))  # [BK, M, N]
  total_ce, total_kl, total_w = 0.0, 0.0, 0.0

  # Node-level state.
  if reps.node_x is not None:
    zx = _embed(node_critic, reps.node_x)                               # [BK, M, N, D]
    zy = _embed(node_critic, reps.node_y)                               # [BK, M, N', D]
    anchor_y = jnp.take_along_axis(zy, nmap[..., None], 2)            # z_y(m(i))
    ce_xy, ce_yx, kl = contrast_terms(
        zx[..., None, :, :], zy[..., None, :, :], zx, anchor_y,
        target_b=nmap, target_a=jnp.broadcast_to(jnp.arange(n), nmap.shape),
        valid_a=mask_x[..., None, :], valid_b=mask_y[..., None, :],
        cols_a_in_b=jnp.broadcast_to(nmap[..., None, :], nmap.shape + (n,)),
        temperature=temperature)
    w = (pairs.mask * pairs.node_valid)[..., None] * mask_x
    total_ce += jnp.sum(w * (ce_xy + ce_yx) / 2)
    total_kl += jnp.sum(w * kl)
    total_w += jnp.sum(w)

  # Pointer hints.
  for h, valid in pairs.pointer_valid.items():
    rx = reps.pair_x[h]                                                 # [BK, M, N, N, H]
    ry = jnp.take_along_axis(reps.pair_y[h], nmap[..., None, None], 2)  # rows m(i): [.., N, N', H]
    zx, zy = _embed(pair_critic, rx), _embed(pair_critic, ry)
    target = batch_x.hints[h][pairs.t + 1, b_of[:, None]]              # [BK, M, N] (x indices)
    target_y = jnp.take_along_axis(nmap, target, -1)                  # m(j)
    anchor_x = jnp.take_along_axis(zx, target[..., None, None], 3)[..., 0, :]
    anchor_y = jnp.take_along_axis(zy, target_y[..., None, None], 3)[..., 0, :]
    ce_xy, ce_yx, kl = contrast_terms(
        zx, zy, anchor_x, anchor_y, target_b=target_y, target_a=target,
        valid_a=mask_x[..., None, :], valid_b=mask_y[..., None, :],
        cols_a_in_b=jnp.broadcast_to(nmap[..., None, :], nmap.shape + (n,)),
        temperature=temperature)
    w = (pairs.mask * valid)[..., None] * mask_x
    total_ce += jnp.sum(w * (ce_xy + ce_yx) / 2)
    total_kl += jnp.sum(w * kl)
    total_w += jnp.sum(w)
  denom = jnp.maximum(total_w, 1.0)
  return total_ce / denom, total_kl / denom, total_w


class TwinSteps(NamedTuple):
  """What the one-step twin side needs of the twins, per twin k and pair slot m:
  inputs name -> `[BK, N', ...]`; hints name -> `[BK, M, N', ...]` the twin's
  true hints at step t' of each pair (pointers as indices); node_mask `[BK, N']`."""
  inputs: dict
  hints: dict
  node_mask: np.ndarray


def twin_steps(batch_y: Batch, pairs: PairData) -> TwinSteps:
  """Host side: the twins' hints at the selected steps t' (a padded pair slot
  reads step 0; its weight is 0)."""
  rows = np.arange(pairs.t_twin.shape[0])[:, None]
  return TwinSteps(batch_y.inputs, {k: v[pairs.t_twin, rows] for k, v in batch_y.hints.items()},
                   batch_y.node_mask)


def one_step_outputs(step_net: hk.Transformed, spec: dict, params, rng, batch_x: Batch,
                     latents: jax.Array, twins: TwinSteps, pairs: PairData,
                     num_augmentations: int) -> tuple:
  """Both sides of each pair from ONE processor step each, from the same state.

  Original: its inputs, its true hints of step t, the rollout's latent entering
  step t (`latents`, `[S, B, N, H]`). Twin: its inputs, its true hints of step
  t', and the same latent on its original nodes (through the node map), added
  nodes starting from zero as every node does at step 0. The two steps differ
  only by the added nodes and their edges (and the hints there).

  Returns:
    (step_x, step_y): `StepOutput`s of the R = BK * M pairs, flattened pair-major
    (row k * M + m is twin k's pair slot m).
  """
  bk, m = pairs.t.shape
  r = bk * m
  b_of = jnp.arange(bk) // num_augmentations
  n, n_y = batch_x.num_nodes, twins.node_mask.shape[1]
  per_pair = lambda x: jnp.repeat(x, m, axis=0)                    # noqa: E731  [BK] -> [BK*M]
  flat = lambda x: x.reshape((r,) + x.shape[2:])                   # noqa: E731  [BK, M] -> [BK*M]
  mask_x = per_pair(batch_x.node_mask[b_of])                                 # [R, N]
  latent_x = flat(latents[pairs.t, b_of[:, None]])                           # [R, N, H]
  hints_x = {k: flat(v[pairs.t, b_of[:, None]]) for k, v in batch_x.hints.items()}
  step_x = step_net.apply(params, rng, {k: per_pair(v[b_of]) for k, v in batch_x.inputs.items()},
                          dense_data(spec, hints_x, n), latent_x, mask_x, is_training=True)
  nmap = per_pair(pairs.node_map)                                            # [R, N]
  latent_y = jnp.zeros((r, n_y, latent_x.shape[-1]), latent_x.dtype).at[
      jnp.arange(r)[:, None], nmap].add(latent_x * mask_x[..., None])  # padding adds zeros
  step_y = step_net.apply(params, rng, {k: per_pair(v) for k, v in twins.inputs.items()},
                          dense_data(spec, {k: flat(v) for k, v in twins.hints.items()}, n_y),
                          latent_y, per_pair(twins.node_mask), is_training=True)
  return step_x, step_y


def one_step_reps(step_net: hk.Transformed, spec: dict, params, rng, batch_x: Batch,
                  latents: jax.Array, twins: TwinSteps, pairs: PairData,
                  num_augmentations: int) -> TwinReps:
  """The representations of `one_step_outputs`, per twin k and pair slot m."""
  step_x, step_y = one_step_outputs(step_net, spec, params, rng, batch_x, latents, twins, pairs,
                                    num_augmentations)
  bk, m = pairs.t.shape
  unflat = lambda x: x.reshape((bk, m) + x.shape[1:])              # noqa: E731
  return TwinReps(unflat(step_x.node_reps), unflat(step_y.node_reps),
                  {h: unflat(v) for h, v in step_x.pair_reps.items()},
                  {h: unflat(v) for h, v in step_y.pair_reps.items()}, twins.node_mask)


class HintReLIC(Method):
  """Training method: batches carry originals, twins and the selected pairs.
  Registered as `hint_relic`, and with overrides as the ablations `twins_only`
  and `contrast_no_kl` (see `nar.registry`)."""

  supports_multi_task = True

  @classmethod
  def supports(cls, config: TrainConfig, spec: dict) -> bool:
    """Whether the algorithm has an augmentation rule."""
    import augment
    return config.algorithm in augment.supported()

  @classmethod
  def check(cls, config: TrainConfig, spec: dict) -> None:
    """An augmentation rule for the algorithm, and `relic_hints` naming hints it has."""
    import augment
    from nar.config import ConfigError
    supported = augment.supported()
    if config.algorithm not in supported:
      raise ConfigError(f"method {config.method} needs an augmentation rule, and "
                        f"{config.algorithm} has none; supported: {', '.join(supported)}")
    try:
      pointers, others = regularised_hints(spec, config.relic_hints)
    except ValueError as e:
      raise ConfigError(f'relic_hints: {e}') from e
    if not pointers and not others:
      raise ConfigError(f'relic_hints {config.relic_hints!r} selects no hint: Hint-ReLIC '
                        'would regularise nothing')

  def __init__(self, config: TrainConfig, spec: dict, param_prefix: str = ''):
    import augment
    super().__init__(config, spec, param_prefix)
    self.augmenter = augment.get(config.algorithm)   # clear error when unsupported
    self.pointer_hints, self.other_hints = regularised_hints(spec, config.relic_hints)
    self.stream = data_lib.TrainStream(config.algorithm, config.seed, config.batch_size,
                                       config.train_sizes)

  @functools.cached_property
  def twin_plan(self) -> data_lib.PaddingPlan:
    """The twins' own padding plan, probed on twins of the stream's probe. Lazy:
    augmenting the probe costs seconds, and evaluation or `example_batch` need
    no twins."""
    rng = np.random.default_rng(data_lib.PROBE_SEED)
    return data_lib.PaddingPlan.probe(
        {size: [self.augmenter(x, rng).twin for x in ss]
         for size, ss in self.stream.probe.items()})

  # ---- host side
  def make_item(self, samples, step: int, size: Optional[int] = None):
    """Rollout twins: (originals, twins, pairs), two padded batches, each to its
    own shape (twins may have added nodes; padding the originals to the twins'
    size would cost (N'/N)^3 in the triplet processor), and the selected pairs.
    One-step twins: (originals, `TwinSteps`, pairs), plus the twin batch when
    the twins are supervised (relic_beta > 0). `size`: the training size, to pad
    to the planned shapes (see `data.PaddingPlan`)."""
    cfg = self.config
    rng = np.random.default_rng([cfg.seed, step, 0xA06])
    twins = []
    for s in samples:
      for _ in range(cfg.augmentations):
        twins.append(self.augmenter(s, rng))
    batch_x = self.stream.plan.pad(list(samples), self.spec, size)
    batch_y = self.twin_plan.pad([a.twin for a in twins], self.spec, size)
    pairs = select_pairs(twins, batch_x.num_nodes, cfg.relic_pairs,
                         self.pointer_hints, self.other_hints, rng)
    if cfg.relic_twin == 'rollout':
      return batch_x, batch_y, pairs
    steps = twin_steps(batch_y, pairs)
    return (batch_x, steps, pairs) + ((batch_y,) if cfg.relic_beta > 0 else ())

  def batch(self, step: int):
    samples = data_lib.make_train_samples(self.config.algorithm, self.config.seed, step,
                                          self.config.batch_size, self.config.train_sizes)
    return self.make_item(samples, step, data_lib.size_of_step(self.config.algorithm, step,
                                                               self.config.train_sizes))

  def example_batch(self) -> Batch:
    return self.stream.batch(0)

  def place(self, item, placement):
    batch_x, twins, pairs = item[:3]
    placed_twins = (placement.batch(twins) if isinstance(twins, Batch)
                    else placement.shard(twins))
    return (placement.batch(batch_x), placed_twins, placement.shard(pairs)) + tuple(
        placement.batch(b) for b in item[3:])

  # ---- device side
  def _critic(self) -> hk.Transformed:
    """The critic MLPs g, sized for pair features (hidden) and node embeddings
    (3 * hidden)."""
    cfg = self.config
    return hk.transform(lambda: Critics(cfg.relic_critic_hidden, cfg.relic_critic_hidden // 2,
                                        name=self.critic_name)(cfg.hidden, 3 * cfg.hidden))

  @property
  def critic_name(self) -> str:
    """The critics' module name: `relic_critic`, `algo_{i}_relic_critic` for
    algorithm i of a multi-task run (its own critics, left alone by the other
    algorithms' steps)."""
    return self.param_prefix + CRITIC

  def extra_params(self, key) -> dict:
    return self._critic().init(key)

  def init(self, net, key, example: Batch):
    params = net.init(key, example.inputs, example.hints, example.lengths, example.node_mask,
                      is_training=True)
    return {**params, **self.extra_params(jax.random.fold_in(key, 1))}

  @property
  def loss_parts(self) -> tuple:
    """The supervised loss, lambda * contrast and lambda * alpha * KL (when the
    invariance term is on)."""
    cfg = self.config
    return ('supervised', 'contrast', 'kl') if cfg.relic_contrast and cfg.relic_lambda > 0 else ()

  @property
  def algorithm_index(self) -> int:
    """The algorithm's index in a multi-task network (its `algo_{i}_` prefix), 0 alone."""
    return int(self.param_prefix[len('algo_'):-1]) if self.param_prefix else 0

  def step_net(self) -> hk.Transformed:
    """One processor step of this algorithm's network from a given state
    (`nar.model.make_step_net`), with the run's parameters."""
    example = self.example_batch()
    return make_step_net(self.spec, nb_dims_of(example.inputs, example.hints, example.outputs),
                         net_config_of(self.config), self.algorithm_index)

  def loss_fn(self, net):
    cfg, spec = self.config, self.spec
    critic = self._critic()
    contrast = cfg.relic_contrast and cfg.relic_lambda > 0
    one_step = cfg.relic_twin == 'step'
    step_net = self.step_net() if one_step and contrast else None

    def forward(params, rng, batch: Batch, reps: bool = False, latents: bool = False):
      return net.apply(params, rng, batch.inputs, batch.hints, batch.lengths,
                       batch.node_mask, is_training=True, return_representations=reps,
                       return_latents=latents)

    def loss(params, rng, batch_x: Batch, twins, pairs: PairData, batch_y: Optional[Batch] = None):
      """twins: the twin `Batch` (rollout) or `TwinSteps` (one step); batch_y:
      the twin batch to supervise in one-step mode (relic_beta > 0)."""
      # Every algorithm's critics are out of the network's parameters (multi-task).
      net_params = {k: v for k, v in params.items() if not is_critic(k)}
      if not one_step:
        batch_y = twins
      out_x = forward(net_params, rng, batch_x, reps=contrast and not one_step,
                      latents=contrast and one_step)
      sup_x, terms = supervised_loss(spec, out_x, batch_x)
      total = sup_x
      terms = {**terms, 'sup_x': sup_x}
      out_y = None
      if batch_y is not None:
        out_y = forward(net_params, rng, batch_y, reps=contrast and not one_step)
        sup_y, _ = supervised_loss(spec, out_y, batch_y)
        total = total + cfg.relic_beta * sup_y
        terms['sup_twin'] = sup_y
      parts = {'supervised': total}
      if contrast:
        critics = critic.apply({k: v for k, v in params.items()
                                if k.split('/')[0] == self.critic_name}, None)
        if one_step:
          reps = one_step_reps(step_net, spec, net_params, rng, batch_x, out_x.latents, twins,
                               pairs, cfg.augmentations)
        else:
          reps = rollout_reps(out_x, out_y, batch_y, pairs, cfg.augmentations)
        ce, kl, anchors = pair_contrast(reps, batch_x, pairs, critics, cfg.augmentations,
                                        cfg.relic_temperature)
        parts['contrast'] = cfg.relic_lambda * ce
        parts['kl'] = cfg.relic_lambda * cfg.relic_alpha * kl
        total = total + parts['contrast'] + parts['kl']
        terms.update({'relic_contrast': ce, 'relic_kl': kl, 'relic_anchors': anchors})
      return total, {**terms, **{PART_PREFIX + k: v for k, v in parts.items()}}
    return loss
