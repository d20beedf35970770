"""The encode-process-decode reasoner (dm-clrs `nets.Net`, single algorithm).

Same mathematics and parameter names as dm-clrs 2.0.3. By default (run.py's
defaults) hints are encoded and decoded, re-predicted soft, without teacher
forcing: step 0 reads the true hints tau_0, every later step reads the soft
decoding of the previous prediction. `NetConfig` holds run.py's other settings
(hints decoded only or not used, teacher forcing, hard re-prediction, dropout,
an LSTM, several message-passing steps per hint), each as dm-clrs computes it.
Differences are in the work done, not the result:
  * input encodings (and their projections by the processor and decoders) are
    computed once per sample, not once per step;
  * outputs are decoded once, from the state of each sample's last step,
    instead of at every step;
  * the time loop is a plain `jax.lax.scan` over weights fetched beforehand;
  * padded nodes are masked everywhere (messages, triplets, pointer candidates,
    Sinkhorn, graph readout), so a padded batch predicts what the unpadded one does.

The forward pass also returns the per-step representations Hint-ReLIC needs:
node embeddings `h_t = [node_fts, h_{t-1}, h_t]` and, for every pointer hint, the
pair features `r(i, j)` its decoder scores (pre-logit).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import haiku as hk
import jax
import jax.numpy as jnp

from nar import clrs_import  # noqa: F401
from clrs._src import specs as clrs_specs

from nar.layers import Affine, Dense, matmul
from nar.processors import (BIG, FAST_KINDS, FoldedEdges, MPNNWeights, ProcessorConfig,
                            mpnn_edge_consumers, mpnn_step)

_Stage = clrs_specs.Stage
_Loc = clrs_specs.Location
_Type = clrs_specs.Type

SINKHORN_TEMPERATURE = 0.1
SINKHORN_STEPS_DECODE = 10      # inside the decoder, train and eval
SINKHORN_STEPS_EVAL = 50        # extra steps when scoring outputs (dm-clrs: 10 + 50)


class NetOutput(NamedTuple):
  """outputs: name -> logits `[B, ...]`; hints: name -> logits `[S, B, ...]` for
  steps 1..S (S = T - 1, prediction of tau_{s} from step s-1);
  node_reps: `[S, B, N, 3H]` or None; pair_reps: pointer hint -> `[S, B, N, N, H]`;
  latents: `[S, B, N, H]` the processor latent entering each step, or None."""
  outputs: dict
  hints: dict
  node_reps: Optional[jax.Array]
  pair_reps: Optional[dict]
  latents: Optional[jax.Array] = None


class StepOutput(NamedTuple):
  """One step (`make_step_net`): hints: name -> logits `[B, ...]` of the next
  hints; node_reps `[B, N, 3H]`; pair_reps: pointer hint -> `[B, N, N, H]`;
  latent `[B, N, H]` entering the next step."""
  hints: dict
  node_reps: jax.Array
  pair_reps: dict
  latent: jax.Array


@dataclasses.dataclass(frozen=True)
class NetConfig:
  processor: ProcessorConfig = ProcessorConfig()
  encoder_init: str = 'xavier_on_scalars'
  # 'bfloat16': mixed precision. Parameters stay float32 (cast when read), the
  # network computes in bfloat16, outputs (and so the losses) are float32.
  compute_dtype: str = 'float32'
  # 'full': the backward pass recomputes each time step's activations instead of
  # storing them for all T steps (nar.config.REMAT_MODES).
  remat: str = 'full'
  # > 1: the batch is split into this many groups of samples of similar
  # trajectory length, each of which skips the steps past its longest sample.
  length_groups: int = 1
  # dm-clrs examples/run.py's settings (nar.config.TrainConfig documents each).
  hint_mode: str = 'encoded_decoded'
  hint_teacher_forcing: float = 0.0
  hint_repred_mode: str = 'soft'
  dropout_prob: float = 0.0
  use_lstm: bool = False
  nb_msg_passing_steps: int = 1

  @property
  def encode_hints(self) -> bool:
    return self.hint_mode == 'encoded_decoded'

  @property
  def decode_hints(self) -> bool:
    return self.hint_mode != 'none'

  def hard_repred(self, is_training: bool) -> bool:
    """Whether predicted hints are fed back hard (argmax, thresholds, no gradient)."""
    return self.hint_repred_mode == 'hard' or (self.hint_repred_mode == 'hard_on_eval'
                                               and not is_training)

  def needs_step_key(self, is_training: bool) -> bool:
    """Whether a training rollout draws randomness per step (dropout, partial
    teacher forcing)."""
    return is_training and (self.dropout_prob > 0 or
                            (self.encode_hints and 0 < self.hint_teacher_forcing < 1))


def log_sinkhorn(x: jax.Array, steps: int, temperature: float, node_mask: jax.Array,
                 noise_key: Optional[jax.Array] = None) -> jax.Array:
  """dm-clrs `log_sinkhorn` (zero diagonal) on `[B, N, N]` logits, with padded
  rows/columns split into their own block so they never take real mass."""
  if noise_key is not None:
    noise = -jnp.log(-jnp.log(jax.random.uniform(noise_key, x.shape) + 1e-12) + 1e-12)
    x = x + noise
  x = x / temperature
  x = x - 1e6 * jnp.eye(x.shape[-1])
  real = node_mask > 0.5
  same_block = real[:, :, None] == real[:, None, :]
  both_real = real[:, :, None] & real[:, None, :]
  x = jnp.where(both_real, x, jnp.where(same_block, 0.0 - 1e6 * jnp.eye(x.shape[-1]), -BIG))
  for _ in range(steps):
    x = jax.nn.log_softmax(x, axis=-1)
    x = jax.nn.log_softmax(x, axis=-2)
  return x


def _mask_candidates(logits: jax.Array, node_mask: jax.Array) -> jax.Array:
  """Padded nodes are never a pointer target: logits `[B, ..., N]`."""
  shape = (node_mask.shape[0],) + (1,) * (logits.ndim - 2) + (node_mask.shape[1],)
  return jnp.where(node_mask.reshape(shape) > 0.5, logits, -BIG)


class Net(hk.Module):
  """Haiku module named 'net' like dm-clrs's, so parameter trees are interchangeable."""

  def __init__(self, spec, nb_dims, config: NetConfig, name: str = 'net'):
    """spec, nb_dims: one algorithm's (dicts), or one per algorithm (sequences
    of dicts, multi-task): the processor is shared, algorithm i has its own
    encoders and decoders, named `algo_{i}_...` as dm-clrs's `Net` of a list
    of specs names them."""
    super().__init__(name=name)
    self.specs = [spec] if isinstance(spec, dict) else list(spec)
    self.nb_dims_list = [nb_dims] if isinstance(nb_dims, dict) else list(nb_dims)
    if len(self.specs) != len(self.nb_dims_list):
      raise ValueError(f'{len(self.specs)} specs but {len(self.nb_dims_list)} nb_dims')
    self.config = config
    self.hidden = config.processor.hidden
    for spec_ in self.specs:
      for name_, (stage, loc, typ) in spec_.items():
        if stage == _Stage.HINT and typ == _Type.PERMUTATION_POINTER:
          raise NotImplementedError(f'permutation-pointer hint {name_} is not supported')
    self._select(0)

  def _select(self, algorithm_index: int) -> None:
    """Makes algorithm `algorithm_index` the one the methods below work on."""
    if not 0 <= algorithm_index < len(self.specs):
      raise ValueError(f'algorithm_index {algorithm_index} out of range for '
                       f'{len(self.specs)} algorithm(s)')
    self.algorithm_index = algorithm_index
    self.spec = self.specs[algorithm_index]
    self.nb_dims = self.nb_dims_list[algorithm_index]

  # ---------------------------------------------------------------- parameters
  def _construct_encoders_decoders(self):
    """Creates encoder/decoder parameter holders with dm-clrs's names (the method
    name is part of dm-clrs's parameter paths)."""
    h = self.hidden
    prefix = f'algo_{self.algorithm_index}_'
    encoders, decoders = {}, {}
    encode = (_Stage.INPUT, _Stage.HINT) if self.config.encode_hints else (_Stage.INPUT,)
    decode = (_Stage.OUTPUT, _Stage.HINT) if self.config.decode_hints else (_Stage.OUTPUT,)
    for name, (stage, loc, typ) in self.spec.items():
      if stage in encode:
        w_init = None
        if (self.config.encoder_init == 'xavier_on_scalars' and stage == _Stage.HINT and
            typ == _Type.SCALAR):
          w_init = hk.initializers.TruncatedNormal(stddev=1.0 / jnp.sqrt(h))
        enc = [Dense(h, w_init=w_init, name=f'{prefix}{name}_enc_linear')]
        if loc == _Loc.EDGE and typ == _Type.POINTER:
          enc.append(Dense(h, w_init=w_init, name=f'{prefix}{name}_enc_linear'))
        encoders[name] = enc
      if stage in decode:
        nd = self.nb_dims[name]
        mk = lambda size, n=name: Dense(size, name=f'{prefix}{n}_dec_linear')  # noqa: E731
        if loc == _Loc.NODE:
          if typ in (_Type.SCALAR, _Type.MASK, _Type.MASK_ONE):
            dec = (mk(1),)
          elif typ == _Type.CATEGORICAL:
            dec = (mk(nd),)
          else:
            dec = (mk(h), mk(h), mk(h), mk(1))
        elif loc == _Loc.EDGE:
          if typ in (_Type.SCALAR, _Type.MASK, _Type.MASK_ONE):
            dec = (mk(1), mk(1), mk(1))
          elif typ == _Type.CATEGORICAL:
            dec = (mk(nd), mk(nd), mk(nd))
          else:
            dec = (mk(h), mk(h), mk(h), mk(h), mk(1))
        else:
          if typ in (_Type.SCALAR, _Type.MASK, _Type.MASK_ONE):
            dec = (mk(1), mk(1))
          elif typ == _Type.CATEGORICAL:
            dec = (mk(nd), mk(nd))
          else:
            dec = (mk(1), mk(1), mk(1))
        decoders[name] = dec
    return encoders, decoders

  def _input_size(self, name: str) -> int:
    _, loc, typ = self.spec[name]
    return self.nb_dims[name] if typ == _Type.CATEGORICAL else 1

  def _fetch(self, encoders, decoders, edge_size: int):
    """All encoder/decoder weights as arrays, fetched once (outside the time loop)."""
    h = self.hidden
    enc_w = {n: [e.params(self._input_size(n)) for e in es] for n, es in encoders.items()}
    e_t = edge_size
    dec_w = {}
    for name, ds in decoders.items():
      _, loc, typ = self.spec[name]
      if loc == _Loc.NODE:
        if typ in (_Type.POINTER, _Type.PERMUTATION_POINTER):
          ins = (3 * h, 3 * h, e_t, h)
        else:
          ins = (3 * h,)
      elif loc == _Loc.EDGE:
        ins = (3 * h, 3 * h, e_t, 3 * h, h)[:len(ds)]
      else:
        ins = (3 * h, h, 3 * h)[:len(ds)]
      dec_w[name] = tuple(d.params(i) for d, i in zip(ds, ins))
    return enc_w, dec_w

  # ------------------------------------------------------------------ encoding
  def _encode(self, data: dict, enc_w: dict, node_mask: jax.Array, stage: str, b: int, n: int):
    """Encodes inputs or (dense) hints. Returns node `[B,N,H]`, graph `[B,H]`,
    edge channels [(x, w, b)], and the adjacency contribution (bool `[B,N,N]`)."""
    h = self.hidden
    node = jnp.zeros((b, n, h), node_mask.dtype)   # the compute dtype
    graph = jnp.zeros((b, h), node_mask.dtype)
    channels = []
    adj = jnp.zeros((b, n, n), bool)
    for name, (st, loc, typ) in self.spec.items():  # spec order: a fixed channel order
      if st != stage or name not in data:
        continue
      x = data[name]
      enc = enc_w[name]
      if typ in (_Type.POINTER, _Type.PERMUTATION_POINTER):
        if loc == _Loc.NODE:
          adj = adj | ((x + jnp.swapaxes(x, 1, 2)) > 0.5)
          channels.append((x[..., None], enc[0].w, enc[0].b))
        elif loc == _Loc.EDGE:
          # dm-clrs: mean over senders of enc0(x) + mean over receivers of enc1(x);
          # the mean is over real nodes (= dm-clrs's when nothing is padded).
          cnt = jnp.sum(node_mask, axis=1)[:, None, None]
          m1 = jnp.sum(x * node_mask[:, :, None, None], axis=1) / cnt
          m2 = jnp.sum(x * node_mask[:, None, :, None], axis=2) / cnt
          channels.append((m1[..., None], enc[0].w, enc[0].b))
          channels.append((m2[..., None], enc[1].w, enc[1].b))
        else:
          node = node + enc[0](x[..., None])
        continue
      feat = x if typ == _Type.CATEGORICAL else x[..., None]
      if loc == _Loc.NODE:
        node = node + enc[0](feat)
      elif loc == _Loc.EDGE:
        if typ == _Type.MASK:
          adj = adj | ((x + jnp.swapaxes(x, 1, 2)) > 0.0)
        channels.append((feat, enc[0].w, enc[0].b))
      else:
        graph = graph + enc[0](feat)
    return node, graph, channels, adj

  # ------------------------------------------------------------------ decoding
  def _decode(self, name: str, w: tuple, h_t, edges: FoldedEdges, tri, graph_fts, node_mask,
              is_training: bool, rng, pair_rep: bool = False):
    """Logits of one hint/output (dm-clrs `decode_fts`). Returns (logits, pair features)."""
    _, loc, typ = self.spec[name]
    h = self.hidden

    def edge_half(dense: Affine, key: str):
      # e_t = [edge_fts, tri_msgs]: the edge half goes through FoldedEdges.
      out = edges.project(key, dense.w[:h], dense.b)
      if tri is not None:
        out = out + matmul(tri, dense.w[h:])
      return out

    pair = None
    if loc == _Loc.NODE:
      if typ in (_Type.SCALAR, _Type.MASK, _Type.MASK_ONE):
        logits = w[0](h_t)[..., 0]
        if typ == _Type.MASK_ONE:
          logits = _mask_candidates(logits, node_mask)
      elif typ == _Type.CATEGORICAL:
        logits = w[0](h_t)
      else:
        p_1, p_2 = w[0](h_t), w[1](h_t)
        p_3 = edge_half(w[2], f'dec/{name}')
        p_e = p_2[:, :, None, :] + p_3                       # [B, j, i, H]
        pair = jnp.maximum(p_1[:, :, None, :], jnp.swapaxes(p_e, 1, 2))  # [B, i, j, H]
        logits = _mask_candidates(w[3](pair)[..., 0], node_mask)
        if typ == _Type.PERMUTATION_POINTER:
          logits = log_sinkhorn(logits, SINKHORN_STEPS_DECODE, SINKHORN_TEMPERATURE, node_mask,
                                rng if is_training else None)
    elif loc == _Loc.EDGE:
      pred = (w[0](h_t)[:, :, None, :] + w[1](h_t)[:, None, :, :] +
              edge_half(w[2], f'dec/{name}'))
      if typ in (_Type.SCALAR, _Type.MASK, _Type.MASK_ONE):
        logits = pred[..., 0]
      elif typ == _Type.CATEGORICAL:
        logits = pred
      else:
        pred_2 = w[3](h_t)
        pair = jnp.maximum(pred[:, :, :, None, :], pred_2[:, None, None, :, :])
        logits = _mask_candidates(w[4](pair)[..., 0], node_mask)
    else:
      gr = jnp.max(jnp.where(node_mask[..., None] > 0.5, h_t, -BIG), axis=1)
      pred = w[0](gr) + w[1](graph_fts)
      if typ in (_Type.SCALAR, _Type.MASK, _Type.MASK_ONE):
        logits = pred[..., 0]
      elif typ == _Type.CATEGORICAL:
        logits = pred
      else:
        logits = _mask_candidates(pred + w[2](h_t)[..., 0], node_mask)
    return logits, (pair if pair_rep else None)

  # ------------------------------------------------------------------- forward
  # Modules are created in __call__'s scope (`hk.transparent`), so their names
  # match dm-clrs's (`net/mpnn_aggr_clrs_processor/...`).
  @hk.transparent
  def _prepare(self, inputs: dict, node_mask: jax.Array) -> '_Context':
    """Everything the steps of one batch share: modules (built here, in the
    call, so their names match dm-clrs's), weights fetched once, and the input
    encodings with their projections (once per sample, not once per step)."""
    b, n = node_mask.shape
    h = self.hidden
    proc = self.config.processor
    dtype = jnp.dtype(self.config.compute_dtype)
    node_mask = node_mask.astype(dtype)
    tri_size = h if proc.returns_edges() else 0
    encoders, decoders = self._construct_encoders_decoders()
    proc_params = None
    if proc.is_fast:
      use_tri, gated = FAST_KINDS[proc.kind]
      proc_params = MPNNWeights(h, use_tri, gated, proc.use_ln, proc.nb_triplet_fts)(
          2 * h, h, h)
    enc_w, dec_w = self._fetch(encoders, decoders, h + tri_size)
    lstm = LSTMWeights(h)() if self.config.use_lstm else None
    generic = None
    if not proc.is_fast:
      generic = hk.lift(hk.transform(
          lambda *a, **k: proc.clrs_factory()(h)(*a, **k)).init, name='lifted_processor')

    in_data = dense_data(self.spec, inputs, n, dtype)
    node_in, graph_in, in_channels, adj_in = self._encode(in_data, enc_w, node_mask,
                                                          _Stage.INPUT, b, n)
    static = FoldedEdges(None, {}, in_channels).materialise() if in_channels else None
    static_proj = {}
    if static is not None:
      consumers = {}
      if proc.is_fast:
        consumers.update(mpnn_edge_consumers(proc_params))
      for name, w in dec_w.items():
        if self._reads_edges(name):
          consumers[f'dec/{name}'] = w[2].w[:h]
      keys = list(consumers)
      sizes = [consumers[k].shape[-1] for k in keys]
      proj = matmul(static, jnp.concatenate([consumers[k] for k in keys], axis=-1))
      offset = 0
      for k, s in zip(keys, sizes):
        static_proj[k] = proj[..., offset:offset + s]
        offset += s

    generic_params = generic_apply = None
    if generic is not None:
      dummy = jnp.zeros((b, n, h))
      key = hk.maybe_next_rng_key()
      key = jax.random.PRNGKey(0) if key is None else key
      generic_params = generic(key, dummy, jnp.zeros((b, n, n, h)), jnp.zeros((b, h)),
                               jnp.ones((b, n, n)), dummy, batch_size=b, nb_nodes=n)
      generic_apply = hk.transform(lambda *a, **k: proc.clrs_factory()(h)(*a, **k)).apply
    return _Context(b, n, dtype, node_mask, enc_w, dec_w, proc_params, generic_params,
                    generic_apply, node_in, graph_in, static, static_proj, adj_in, lstm)

  def _reads_edges(self, name: str) -> bool:
    """Whether the decoder of `name` has an edge half (`_decode`'s `edge_half`)."""
    _, loc, typ = self.spec[name]
    return (loc == _Loc.NODE and typ in (_Type.POINTER, _Type.PERMUTATION_POINTER)) or \
        loc == _Loc.EDGE

  def _hint_names(self) -> list[str]:
    """The hints decoded at each step (none when hints are not decoded)."""
    if not self.config.decode_hints:
      return []
    return [k for k, v in self.spec.items() if v[0] == _Stage.HINT]

  def _pointer_hints(self) -> list[str]:
    return [k for k in self._hint_names()
            if self.spec[k][2] == _Type.POINTER and self.spec[k][1] == _Loc.NODE]

  @hk.transparent
  def _step(self, ctx: '_Context', hidden: jax.Array, cur_hints: dict, is_training: bool,
            pair_reps: bool, cell: Optional[jax.Array] = None,
            step_key: Optional[jax.Array] = None):
    """One step (dm-clrs `_msg_passing_step`): encode the current (dense) hints,
    process (`nb_msg_passing_steps` times; then dropout in training, with
    `step_key`, and the LSTM whose `cell` `[B, N, H]` this step reads), decode the
    next hints. Returns (next latent `[B, N, H]`, hint logits, pointer hint ->
    pair features, snapshot (h_t `[B, N, 3H]`, triplet edge messages, hint edge
    channels, graph features), next LSTM cell or None)."""
    b, n, node_mask = ctx.b, ctx.n, ctx.node_mask
    proc = self.config.processor
    if self.config.encode_hints:
      node_h, graph_h, h_channels, adj_h = self._encode(cur_hints, ctx.enc_w, node_mask,
                                                         _Stage.HINT, b, n)
    else:
      node_h, graph_h, h_channels, adj_h = 0.0, 0.0, [], jnp.zeros((b, n, n), bool)
    node_fts = ctx.node_in + node_h
    graph_fts = ctx.graph_in + graph_h
    edges = FoldedEdges(ctx.static, ctx.static_proj, h_channels, shape=(b, n))
    nxt = hidden
    for _ in range(self.config.nb_msg_passing_steps):   # dm-clrs: same features, latent updated
      if proc.is_fast:
        nxt, tri = mpnn_step(ctx.proc_params, node_fts, edges, graph_fts, nxt, node_mask)
      else:
        adj = (ctx.adj_in | adj_h | jnp.eye(n, dtype=bool)[None]).astype(jnp.float32)
        nxt, tri = ctx.generic_apply(ctx.generic_params, None, node_fts,
                                     edges.materialise(node_fts.shape[-1]), graph_fts, adj, nxt,
                                     batch_size=b, nb_nodes=n)
    if is_training and self.config.dropout_prob > 0 and step_key is not None:
      nxt = hk.dropout(step_key, self.config.dropout_prob, nxt)
    if ctx.lstm is not None:
      nxt, cell = ctx.lstm(nxt, hidden, cell)
    h_t = jnp.concatenate([node_fts, hidden, nxt], axis=-1)
    pointer_hints = self._pointer_hints() if pair_reps else []
    hint_logits, pairs = {}, {}
    for name in self._hint_names():
      logits, pair = self._decode(name, ctx.dec_w[name], h_t, edges, tri, graph_fts, node_mask,
                                  is_training, None, pair_rep=name in pointer_hints)
      hint_logits[name] = logits
      if pair is not None:
        pairs[name] = pair
    snapshot = (h_t, tri, [c[0] for c in h_channels], graph_fts)
    return nxt, hint_logits, pairs, snapshot, cell

  @hk.transparent
  def _one_step(self, ctx: '_Context', hints: dict, hidden: jax.Array,
                is_training: bool) -> 'StepOutput':
    if ctx.lstm is not None:
      raise ValueError('a single step from a processor latent has no LSTM state: use_lstm '
                       'networks run whole rollouts only')
    cur = {k: v.astype(ctx.dtype) for k, v in hints.items()}
    nxt, logits, pairs, snap, _ = self._step(ctx, hidden.astype(ctx.dtype), cur, is_training,
                                             pair_reps=True)
    return StepOutput(hints=logits, node_reps=snap[0], pair_reps=pairs, latent=nxt)

  def __call__(self, inputs: dict, hints: dict, lengths: Optional[jax.Array],
               node_mask: jax.Array, *, is_training: bool, return_representations: bool = False,
               return_latents: bool = False, step_from: Optional[jax.Array] = None,
               algorithm_index: int = 0):
    """The rollout (returns `NetOutput`), or with `step_from` a single step
    (returns `StepOutput`, see `make_step_net`).

    Rollout: inputs `[B, N, ...]`, hints `[T, B, ...]` as in a `Batch` (only
    step 0 is read: later steps read the previous step's soft prediction),
    lengths `[B]`. Single step: hints `[B, ...]` entering the step, dense
    (pointers as distributions over nodes: `dense_data` of true hints, or
    `soft_hints` of a prediction), `step_from` `[B, N, H]` the processor latent
    entering the step; the same mathematics as each step of the rollout.
    `algorithm_index`: which algorithm of a multi-task network the data is of.
    """
    self._select(algorithm_index)
    ctx = self._prepare(inputs, node_mask)
    if hk.running_init() and not INIT_RUNS_FORWARD:
      # Every parameter is created in `_prepare` (the loop reads weights fetched
      # there), so initialisation needs nothing after it; running the rollout
      # too cost as much compilation as a training step (`hk.transform.init`
      # discards the output; tests/test_model.py: the same parameters).
      return None
    if step_from is not None:
      return self._one_step(ctx, hints, step_from, is_training)
    rng = None
    if is_training and any(typ == _Type.PERMUTATION_POINTER and stage == _Stage.OUTPUT
                           for stage, _, typ in self.spec.values()):
      rng = hk.maybe_next_rng_key()  # Gumbel noise for the Sinkhorn decoder
    step_key = None
    if self.config.needs_step_key(is_training):
      step_key = hk.next_rng_key()     # dropout, teacher forcing: one key per step from it
    groups = _largest_divisor(ctx.b, self.config.length_groups)
    if groups > 1:
      return self._grouped_rollout(ctx, hints, lengths, groups, is_training,
                                   return_representations, return_latents, rng, step_key)
    return self._rollout(ctx, hints, lengths, is_training, return_representations,
                         return_latents, rng, active_steps=None, step_key=step_key)

  @hk.transparent
  def _grouped_rollout(self, ctx: '_Context', hints: dict, lengths: jax.Array, groups: int,
                       is_training: bool, return_representations: bool,
                       return_latents: bool, rng: Optional[jax.Array],
                       step_key: Optional[jax.Array] = None) -> NetOutput:
    """The rollout of `groups` equal groups of samples of similar length, each
    of which runs only as many steps as its longest trajectory needs (the rest
    of the time loop is skipped). Samples are independent, so this is the same
    result as one rollout of the whole batch, with less padded work. The groups
    run one after the other through one traced step (`lax.map`), so compilation
    does not grow with their number. (In training, the Gumbel noise of a
    permutation output is drawn per group: the same distribution, other draws.)"""
    b = ctx.b
    k = b // groups
    order = jnp.argsort(lengths).reshape(groups, k)      # shortest first
    per_sample = _sample_arrays(ctx)
    grouped = jax.tree_util.tree_map(lambda x: jnp.take(x, order, axis=0), per_sample)
    hints_g = {name: jnp.moveaxis(jnp.take(v, order, axis=1), 1, 0)    # [G, T, k, ...]
               for name, v in hints.items()}
    lengths_g = jnp.take(lengths, order)
    rngs = None if rng is None else jax.random.split(rng, groups)
    step_keys = None if step_key is None else jax.random.split(step_key, groups)

    def one_group(xs):
      arrays, hints_one, lengths_one, rng_one, step_key_one = xs
      active = jnp.maximum(jnp.max(lengths_one) - 1, 1)    # steps with a loss or an output
      return self._rollout(ctx._replace(b=k, **arrays), hints_one, lengths_one, is_training,
                           return_representations, return_latents, rng_one,
                           active_steps=active, step_key=step_key_one)
    out = jax.lax.map(one_group, (grouped, hints_g, lengths_g, rngs, step_keys))
    back = jnp.argsort(order.reshape(-1))

    def batch_major(x):      # [G, k, ...] -> [B, ...] in the original order
      return jnp.take(x.reshape((b,) + x.shape[2:]), back, axis=0)

    def time_major(x):       # [G, S, k, ...] -> [S, B, ...] in the original order
      x = jnp.moveaxis(x, 0, 1)
      return jnp.take(x.reshape((x.shape[0], b) + x.shape[3:]), back, axis=1)
    tm = lambda tree: jax.tree_util.tree_map(time_major, tree)    # noqa: E731
    return NetOutput(outputs=jax.tree_util.tree_map(batch_major, out.outputs),
                     hints=tm(out.hints), node_reps=tm(out.node_reps),
                     pair_reps=tm(out.pair_reps), latents=tm(out.latents))

  @hk.transparent
  def _rollout(self, ctx: '_Context', hints: dict, lengths: jax.Array, is_training: bool,
               return_representations: bool, return_latents: bool, rng: Optional[jax.Array],
               active_steps: Optional[jax.Array],
               step_key: Optional[jax.Array] = None) -> NetOutput:
    """The time loop over one batch; with `active_steps`, steps from that index
    on are skipped (their hint logits and representations are zeros). Step i's
    randomness (dropout, teacher forcing) comes from `fold_in(step_key, i)`."""
    b, n, dtype, node_mask = ctx.b, ctx.n, ctx.dtype, ctx.node_mask
    h = self.hidden
    num_t = next(iter(hints.values())).shape[0]
    nb_steps = max(1, num_t - 1)
    out_step = jnp.maximum(lengths - 2, 0)                      # step whose outputs count
    hint_names = self._hint_names()
    output_names = [k for k, v in self.spec.items() if v[0] == _Stage.OUTPUT]

    config = self.config
    encode = config.encode_hints
    # Hints read by the encoders: step 0's true ones, then the fed-back predictions.
    truth0 = (dense_data(self.spec, {k: v[0] for k, v in hints.items()}, n, dtype)
              if encode else {})
    hidden0 = jnp.zeros((b, n, h), dtype)
    cell0 = jnp.zeros((b, n, h), dtype) if ctx.lstm is not None else None
    hard = config.hard_repred(is_training)
    forcing = config.hint_teacher_forcing if (encode and is_training) else 0.0

    def select(flag, new, old):
      return jax.tree_util.tree_map(
          lambda a, c: jnp.where(flag.reshape((b,) + (1,) * (a.ndim - 1)), a, c), new, old)

    def fed_back(logits, i):
      """The hints step i + 1 reads: the prediction of step i (dm-clrs
      `decoders.postprocess`), or, teacher forced, the true hints of step i + 1."""
      if not encode:
        return {}
      pred = feedback_hints(self.spec, logits, hard)
      if forcing <= 0:
        return pred
      truth = dense_data(self.spec, {k: jax.lax.dynamic_index_in_dim(v, i + 1, 0, False)
                                     for k, v in hints.items()}, n, dtype)
      if forcing >= 1:
        return truth
      # dm-clrs: each sample of the batch is forced with this probability, step by step.
      forced = jax.random.bernoulli(jax.random.fold_in(step_key, 2 * i + 1), forcing, (b,))
      return select(forced, truth, pred)

    def outputs_of(hidden, cell, cur, i):
      key = None if step_key is None else jax.random.fold_in(step_key, 2 * i)
      nxt, logits, pairs, new_snap, new_cell = self._step(
          ctx, hidden, cur, is_training, pair_reps=return_representations, cell=cell,
          step_key=key)
      ys = (logits, (new_snap[0] if return_representations else None), pairs,
            (hidden if return_latents else None))
      return nxt, new_cell, fed_back(logits, i), new_snap, ys

    # Shapes of one step, to build the loop state (the output snapshot).
    shapes = jax.eval_shape(lambda: outputs_of(hidden0, cell0, truth0, 0))
    snap0 = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), shapes[3])

    # Without `active_steps` every step runs, padded ones included (their losses
    # are masked). A whole batch skipping its padded steps gains little (its
    # longest sample sets the length); groups of similar length do
    # (`_grouped_rollout`, measured with remat 'full'; without remat, an earlier
    # lax.cond skip made the backward about 2x slower on XLA:CPU).
    def run(carry, i):
      hidden, cell, cur, snap = carry
      nxt, new_cell, fed, new_snap, ys = outputs_of(hidden, cell, cur, i)
      return (nxt, new_cell, fed, select(out_step == i, new_snap, snap)), ys

    body = run
    if active_steps is not None:
      ys_shapes = shapes[4]

      def skip(carry, i):
        del i
        return carry, jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), ys_shapes)

      def body(carry, i):
        return jax.lax.cond(i < active_steps, run, skip, carry, i)

    if self.config.remat == 'full':
      # prevent_cse=False: inside a scan the recomputation cannot be merged away anyway.
      body = jax.checkpoint(body, prevent_cse=False)
    (hidden, _, cur, snap), ys = jax.lax.scan(body, (hidden0, cell0, truth0, snap0),
                                              jnp.arange(nb_steps))
    hint_logits, node_reps, pair_reps, latents = ys

    # Outputs: decoded once, from each sample's last step.
    h_t, tri, h_xs, graph_fts = snap
    hint_channels = []
    ch_template = (self._encode(truth0, ctx.enc_w, node_mask, _Stage.HINT, b, n)[2]
                   if encode else [])
    for x, (_, cw, cb) in zip(h_xs, ch_template):
      hint_channels.append((x, cw, cb))
    edges = FoldedEdges(ctx.static, ctx.static_proj, hint_channels, shape=(b, n))
    outputs = {}
    for name in output_names:
      outputs[name], _ = self._decode(name, ctx.dec_w[name], h_t, edges, tri, graph_fts,
                                      node_mask, is_training, rng)
    return NetOutput(outputs=outputs, hints=hint_logits,
                     node_reps=node_reps if return_representations else None,
                     pair_reps=pair_reps if return_representations else None,
                     latents=latents if return_latents else None)


# Whether `init` runs the whole forward pass (as it did before, for the tests to
# compare with) or stops once the parameters exist.
INIT_RUNS_FORWARD = False


def _largest_divisor(b: int, at_most: int) -> int:
  """The largest number of equal groups of a batch of `b`, at most `at_most`."""
  return max(g for g in range(1, min(b, at_most) + 1) if b % g == 0)


def _sample_arrays(ctx: '_Context') -> dict:
  """The fields of a context that hold one entry per sample (batch-major)."""
  return dict(node_mask=ctx.node_mask, node_in=ctx.node_in, graph_in=ctx.graph_in,
              static=ctx.static, static_proj=ctx.static_proj, adj_in=ctx.adj_in)


class _Context(NamedTuple):
  """What the steps of one batch share (see `Net._prepare`)."""
  b: int
  n: int
  dtype: jnp.dtype
  node_mask: jax.Array
  enc_w: dict
  dec_w: dict
  proc_params: Optional[object]
  generic_params: Optional[dict]
  generic_apply: Optional[object]
  node_in: jax.Array
  graph_in: jax.Array
  static: Optional[jax.Array]
  static_proj: dict
  adj_in: jax.Array
  lstm: Optional['LSTMCell'] = None


def dense_data(spec: dict, data: dict, n: int, dtype=jnp.float32) -> dict:
  """Inputs or hints of one step as the encoders read them: pointers (node
  indices) one-hot over the `n` nodes, everything in the compute dtype."""
  out = {}
  for name, x in data.items():
    if spec[name][2] == _Type.POINTER:
      x = jax.nn.one_hot(x, n)
    out[name] = x.astype(dtype)
  return out


class LSTMCell(NamedTuple):
  """`hk.LSTM`'s step: one linear map of [input, previous hidden] to the gates (i, g, f, o)."""
  gates: Affine

  def __call__(self, x: jax.Array, hidden: jax.Array,
               cell: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x, hidden, cell `[B, N, H]` -> (hidden, cell). dm-clrs feeds the LSTM the
    processor output and carries the LSTM's hidden state as the next step's
    latent, so the previous hidden state is the latent the step started from."""
    i, g, f, o = jnp.split(self.gates(jnp.concatenate([x, hidden], axis=-1)), 4, axis=-1)
    cell = jax.nn.sigmoid(f + 1) * cell + jax.nn.sigmoid(i) * jnp.tanh(g)   # hk.LSTM's forget bias
    return jax.nn.sigmoid(o) * jnp.tanh(cell), cell


class LSTMWeights(hk.Module):
  """`hk.LSTM(hidden, name='processor_lstm')`'s parameters (dm-clrs `Net`)."""

  def __init__(self, hidden: int, name: str = 'processor_lstm'):
    super().__init__(name=name)
    self.hidden = hidden

  def __call__(self) -> 'LSTMCell':
    return LSTMCell(Dense(4 * self.hidden).params(2 * self.hidden))


def soft_hints(spec: dict, logits: dict) -> dict:
  """dm-clrs soft postprocessing of predicted hints, ready to be encoded as the
  next step's hints."""
  out = {}
  for name, x in logits.items():
    typ = spec[name][2]
    if typ == _Type.MASK:
      x = jax.nn.sigmoid(x)
    elif typ in (_Type.MASK_ONE, _Type.CATEGORICAL, _Type.POINTER):
      x = jax.nn.softmax(x, axis=-1)
    out[name] = x                        # scalars as they are
  return out


def hard_hints(spec: dict, logits: dict) -> dict:
  """dm-clrs hard postprocessing of predicted hints (`hint_repred_mode` 'hard'),
  dense as the encoders read them: argmax one-hots for pointers, categoricals and
  mask_one, thresholded masks, scalars as they are; no gradient flows through."""
  out = {}
  for name, x in logits.items():
    typ = spec[name][2]
    if typ == _Type.MASK:
      x = (x > 0.0).astype(x.dtype)
    elif typ in (_Type.MASK_ONE, _Type.CATEGORICAL, _Type.POINTER):
      x = jax.nn.one_hot(jnp.argmax(x, axis=-1), x.shape[-1], dtype=x.dtype)
    out[name] = jax.lax.stop_gradient(x)
  return out


def feedback_hints(spec: dict, logits: dict, hard: bool) -> dict:
  """The predicted hints as the next step reads them: `hard_hints` or `soft_hints`."""
  return hard_hints(spec, logits) if hard else soft_hints(spec, logits)


def nb_dims_of(batch_inputs: dict, batch_hints: dict, batch_outputs: dict) -> dict:
  """Last-axis sizes (categorical widths), as dm-clrs's BaselineModel records them."""
  out = {}
  for d in (batch_inputs, batch_outputs):
    out.update({k: v.shape[-1] for k, v in d.items()})
  out.update({k: v.shape[-1] for k, v in batch_hints.items()})
  return out


def _with_precision(config: NetConfig, run):
  """Runs `run()` in the configured precision: parameters stay float32 and are
  cast when read, floating outputs come back as float32."""
  if jnp.dtype(config.compute_dtype) == jnp.float32:
    return run()
  compute = jnp.dtype(config.compute_dtype)

  def cast_param(next_getter, value, context):
    del context
    value = next_getter(value)
    return value.astype(compute) if jnp.issubdtype(value.dtype, jnp.floating) else value
  with hk.custom_getter(cast_param):
    out = run()
  return jax.tree_util.tree_map(
      lambda x: x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x, out)


AUTO_LENGTH_GROUPS = 4    # on a CPU, where trajectory lengths vary (docs/speed.md)


def resolve_length_groups(requested: int, lengths_vary: bool, backend: str) -> int:
  """The groups a batch is split into (`TrainConfig.length_groups`): `requested`
  if positive; automatic (0): `AUTO_LENGTH_GROUPS` on a CPU when trajectory
  lengths vary, else 1 (on an accelerator the groups would run one after the
  other on a device that a whole batch keeps busy: not measured, not done)."""
  if requested > 0:
    return requested
  return AUTO_LENGTH_GROUPS if (backend == 'cpu' and lengths_vary) else 1


def net_config_of(config, lengths_vary: bool = False) -> NetConfig:
  """The network settings of a `nar.config.TrainConfig`; `lengths_vary`: whether
  the trajectories of the data differ in length (for `length_groups` 0)."""
  groups = resolve_length_groups(config.length_groups, lengths_vary, jax.default_backend())
  processor = ProcessorConfig(kind=config.processor, hidden=config.hidden, use_ln=config.use_ln,
                              nb_triplet_fts=config.nb_triplet_fts, nb_heads=config.nb_heads)
  return NetConfig(processor=processor, encoder_init=config.encoder_init,
                   compute_dtype=config.precision, remat=config.remat, length_groups=groups,
                   hint_mode=config.hint_mode, hint_teacher_forcing=config.hint_teacher_forcing,
                   hint_repred_mode=config.hint_repred_mode, dropout_prob=config.dropout_prob,
                   use_lstm=config.use_lstm, nb_msg_passing_steps=config.nb_msg_passing_steps)


def make_net(spec, nb_dims, config: NetConfig) -> hk.Transformed:
  """`hk.transform` of `Net(...)(inputs, hints, lengths, node_mask, is_training=...)`.

  spec, nb_dims: one algorithm's dicts, or one per algorithm (multi-task, see
  `Net`). Then `algorithm_index=i` (static) runs algorithm i; `-1`, as in
  dm-clrs, takes a sequence per argument (one batch per algorithm), runs every
  algorithm (to create all parameters at `init`) and returns the last one's output.
  """
  def forward(inputs, hints, lengths, node_mask, is_training: bool,
              return_representations: bool = False, return_latents: bool = False,
              algorithm_index: int = 0):
    def run():
      net = Net(spec, nb_dims, config)
      kw = dict(is_training=is_training, return_representations=return_representations,
                return_latents=return_latents)
      if algorithm_index != -1:
        return net(inputs, hints, lengths, node_mask, algorithm_index=algorithm_index, **kw)
      # One call per algorithm (not a loop inside one call): Haiku names the modules
      # of each call alike, so the processor's parameters are shared.
      out = None
      for i, args in enumerate(zip(inputs, hints, lengths, node_mask)):
        out = net(*args, algorithm_index=i, **kw)
      return out
    return _with_precision(config, run)
  return hk.transform(forward)


def bind_algorithm(net: hk.Transformed, algorithm_index: int) -> hk.Transformed:
  """A multi-task network (`make_net` of several specs) seen as algorithm
  `algorithm_index`'s own: `init`/`apply` take that algorithm's batch and pass
  `algorithm_index` on (so a method written for one algorithm runs unchanged)."""
  import functools
  return hk.Transformed(init=functools.partial(net.init, algorithm_index=algorithm_index),
                        apply=functools.partial(net.apply, algorithm_index=algorithm_index))


def make_step_net(spec: dict, nb_dims: dict, config: NetConfig,
                  algorithm_index: int = 0) -> hk.Transformed:
  """`hk.transform` of one step of the rollout from a given state:
  `apply(params, rng, inputs, hints, hidden, node_mask, is_training)` -> `StepOutput`.

  Args (batch-major): inputs name -> `[B, N, ...]` as in a `Batch`; hints name ->
  `[B, ...]` entering the step, dense (`dense_data` of true hints, or
  `soft_hints` of a prediction); hidden `[B, N, H]` the processor latent
  entering the step (zeros at step 0); node_mask `[B, N]`.
  Its parameters are `make_net`'s (same modules, same names); `algorithm_index`
  i: algorithm i of a multi-task network (its `algo_{i}_` encoders and decoders,
  the shared processor), `spec` and `nb_dims` being that algorithm's.
  """
  # Net names algorithm i's modules by its index in its list of specs; only the
  # selected algorithm's modules are built, so the others' entries are not read.
  specs, dims = [spec] * (algorithm_index + 1), [nb_dims] * (algorithm_index + 1)

  def step(inputs, hints, hidden, node_mask, is_training: bool):
    return _with_precision(config, lambda: Net(specs, dims, config)(
        inputs, hints, None, node_mask, is_training=is_training, step_from=hidden,
        algorithm_index=algorithm_index))
  return hk.transform(step)
