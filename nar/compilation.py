"""XLA compilation: what a run compiles, and compiling it ahead of time.

* `CompileLog` records every XLA program compiled while it is active (JAX's
  `jax.monitoring` events): its name, the seconds spent tracing, lowering and
  compiling it, and whether JAX's persistent compilation cache served it.
* `Precompiler` compiles jitted functions for argument signatures given ahead
  of time, several at once in background threads (XLA:CPU compiles one program
  on one core; the Python thread meanwhile prepares data), and `wrap(fn)` runs
  the precompiled program when the arguments have one of those signatures. The
  program is the one `fn(*args)` would compile (same trace, same lowering):
  only when and where it is compiled changes.
* `ProgramStore` keeps traced and lowered programs on disk (`jax.export`), so
  that another process of the same code and settings skips tracing and
  lowering (seconds a program, in Python) and, with JAX's persistent
  compilation cache, compiles nothing either.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import os
import pickle
import tempfile
import threading
import time
from typing import Callable, Optional

import jax

_TRACE = '/jax/core/compile/jaxpr_trace_duration'
_LOWER = '/jax/core/compile/jaxpr_to_mlir_module_duration'
_COMPILE = '/jax/core/compile/backend_compile_duration'
_CACHE_HIT = '/jax/compilation_cache/cache_hits'
_CACHE_WRITE = '/jax/compilation_cache/cache_misses'   # JAX records a miss when it writes the entry


@dataclasses.dataclass
class Compilation:
  """One XLA program compiled (or loaded from the persistent cache).

  name: JAX's name of the program (`jit(update)`); seconds: the backend's time
  (compiling, or reading the cache entry); source: 'compiled' (and written to
  the persistent cache), 'cache' (read from it) or 'uncached' (compiled, not
  worth a cache entry: below JAX's minimum compile time, or no cache);
  started: seconds since the log began."""
  name: str
  seconds: float
  source: str
  started: float


class CompileLog:
  """Every compilation between `start()` and `stop()` (also a context manager).

  `trace_s` / `lower_s`: the Python-side seconds before XLA (tracing to a
  jaxpr, lowering to StableHLO), summed over all functions; `compilations`: one
  `Compilation` per XLA program, in the order they finished."""

  def __init__(self):
    self.compilations: list[Compilation] = []
    self.trace_s = 0.0
    self.lower_s = 0.0
    self._t0 = time.perf_counter()
    self._lock = threading.Lock()
    self._cache_event = threading.local()

  # -- listeners (called by JAX in the compiling thread)
  def _on_event(self, event: str, **kwargs) -> None:
    del kwargs
    if event == _CACHE_HIT:
      self._cache_event.value = 'cache'
    elif event == _CACHE_WRITE:
      self._cache_event.value = 'compiled'

  def _on_duration(self, event: str, duration: float, **kwargs) -> None:
    with self._lock:
      if event == _TRACE:
        self.trace_s += duration
      elif event == _LOWER:
        self.lower_s += duration
      elif event == _COMPILE:
        source = getattr(self._cache_event, 'value', None) or 'uncached'
        self._cache_event.value = None
        self.compilations.append(Compilation(
            str(kwargs.get('fun_name', '?')), duration, source,
            time.perf_counter() - self._t0 - duration))

  def start(self) -> 'CompileLog':
    self._t0 = time.perf_counter()
    _listeners.add(self)
    return self

  def stop(self) -> None:
    _listeners.discard(self)

  def __enter__(self) -> 'CompileLog':
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()

  # -- reading
  def programs(self, min_seconds: float = 0.0) -> list[Compilation]:
    with self._lock:
      return [c for c in self.compilations if c.seconds >= min_seconds]

  def summary(self) -> dict:
    """Counts and seconds: programs (all XLA programs), compile_s (their backend
    seconds), from_cache (programs the persistent cache served), written (new
    cache entries), trace_s, lower_s."""
    progs = self.programs()
    return {'programs': len(progs),
            'compile_s': round(sum(c.seconds for c in progs), 3),
            'from_cache': sum(c.source == 'cache' for c in progs),
            'written': sum(c.source == 'compiled' for c in progs),
            'trace_s': round(self.trace_s, 3), 'lower_s': round(self.lower_s, 3)}

  def describe(self) -> str:
    """One line for a run's log: what was compiled and what the cache served."""
    s = self.summary()
    big = [c for c in self.programs() if c.seconds >= 1.0 or c.source == 'cache']
    names: dict[str, list] = {}
    for c in big:
      names.setdefault(c.name, []).append(c)
    parts = [f'{len(v)} x {k} ({sum(c.seconds for c in v):.1f} s'
             + (f', {sum(c.source == "cache" for c in v)} from the cache' if any(
                 c.source == 'cache' for c in v) else '') + ')'
             for k, v in names.items()]
    small = s['programs'] - len(big)
    if small:
      parts.append(f'{small} under 1 s')
    return (f"{s['programs']} XLA programs, {s['compile_s']:.1f} s of compilation "
            f"({s['from_cache']} from the persistent cache): " + ', '.join(parts)
            + f"; tracing {s['trace_s']:.1f} s, lowering {s['lower_s']:.1f} s")


class _Listeners:
  """The active logs; JAX's listeners are registered once per process and
  forward to them (JAX keeps every registered listener forever)."""

  def __init__(self):
    self._logs: set = set()
    self._registered = False
    self._lock = threading.Lock()

  def add(self, log: CompileLog) -> None:
    with self._lock:
      if not self._registered:
        jax.monitoring.register_event_listener(self._event)
        jax.monitoring.register_event_duration_secs_listener(self._duration)
        self._registered = True
      self._logs.add(log)

  def discard(self, log: CompileLog) -> None:
    with self._lock:
      self._logs.discard(log)

  def _event(self, event: str, **kwargs) -> None:
    for log in list(self._logs):
      log._on_event(event, **kwargs)  # pylint: disable=protected-access

  def _duration(self, event: str, duration: float, **kwargs) -> None:
    for log in list(self._logs):
      log._on_duration(event, duration, **kwargs)  # pylint: disable=protected-access


_listeners = _Listeners()


# ------------------------------------------------------------ ahead of time
def _sharding(x):
  """The placement a program is compiled for: a committed array's sharding;
  None for host arrays and uncommitted ones (jit places those itself)."""
  if isinstance(x, jax.ShapeDtypeStruct):
    return x.sharding
  if isinstance(x, jax.Array) and x.committed:
    return x.sharding
  return None


def _abstract(x) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=_sharding(x),
                              weak_type=bool(getattr(x, 'weak_type', False)))


def signature(args: tuple):
  """A hashable key of `args`: their tree structure and each leaf's shape,
  dtype, weak type and placement (`_sharding`): what a program is specific to."""
  leaves, tree = jax.tree_util.tree_flatten(args)
  return tree, tuple((tuple(x.shape), str(x.dtype), bool(getattr(x, 'weak_type', False)),
                      _sharding(x)) for x in leaves)


def _all_arrays(args) -> bool:
  return all(hasattr(x, 'shape') and hasattr(x, 'dtype') for x in jax.tree_util.tree_leaves(args))


def default_workers() -> int:
  """Programs compiled at once: one per core this process may use (XLA:CPU
  compiles a program on one thread), at most 8 (each compilation holds its own
  memory)."""
  try:
    cores = len(os.sched_getaffinity(0))
  except AttributeError:
    cores = os.cpu_count() or 1
  return max(1, min(8, cores))


class ProgramStore:
  """Traced and lowered programs in `directory` (one file each: a `jax.export`
  serialisation of the function over its flattened arguments, and the tree of
  its outputs), and the programs compiled from them in this process.

  An entry's name is a hash of `context` (the caller's description of
  everything the programs are traced from that their arguments do not say:
  the code, library versions, settings), the program's name and its
  arguments' signature (`signature`). What is not in those must not change a
  program: a store serves what it holds for them.

  The compiled program is `jax.jit` of the exported one, the same computation
  as the function's own (XLA inlines it; tests/test_compilation.py: bit for bit),
  and the same whether the entry was just written or read: JAX's persistent
  cache finds its executable."""

  # The programs compiled from entries in this process, by entry (the name says
  # everything they are compiled from), for every store: the newest kept.
  _compiled: 'collections.OrderedDict' = collections.OrderedDict()
  _KEEP = 64
  _lock = threading.Lock()

  @classmethod
  def forget_compiled(cls) -> None:
    """Drops the programs compiled in this process (the files stay)."""
    with cls._lock:
      cls._compiled.clear()

  def __init__(self, directory: str, context: str):
    self.directory = directory
    self._context = hashlib.sha256(context.encode()).hexdigest()

  def _path(self, name: str, args) -> str:
    key = hashlib.sha256(f'{self._context}|{name}|{signature(args)!r}'.encode()).hexdigest()
    return os.path.join(self.directory, f'{name}-{key[:32]}.jaxexport')

  def compile(self, fn: Callable, args: tuple, name: str, donate_argnums: tuple = ()):
    """`fn`'s program for `args` (`jax.ShapeDtypeStruct`s), compiled: a callable
    taking arguments of that signature, as `fn` does."""
    path = self._path(name, args)
    with self._lock:
      done = self._compiled.get(path)
    if done is not None:
      return done
    leaves, in_tree = jax.tree_util.tree_flatten(args)
    exported, out_tree = self._read(path)
    if exported is None:
      exported, out_tree = _export_flat(fn, leaves, in_tree)
      self._write(path, exported, out_tree)
    # The donated arguments' leaves, now positions in the flat list.
    counts = [len(jax.tree_util.tree_leaves(a)) for a in args]
    donate = tuple(i for k in donate_argnums
                   for i in range(sum(counts[:k]), sum(counts[:k + 1])))
    def call(*xs):
      return exported.call(*xs)
    call.__name__ = call.__qualname__ = name       # JAX names the program after it
    flat = jax.jit(call, donate_argnums=donate).lower(*leaves).compile()

    def program(*call_args):
      return jax.tree_util.tree_unflatten(out_tree, flat(*jax.tree_util.tree_leaves(call_args)))
    with self._lock:
      self._compiled[path] = program
      while len(self._compiled) > self._KEEP:
        self._compiled.popitem(last=False)
    return program

  @staticmethod
  def _read(path: str):
    try:
      with open(path, 'rb') as f:
        out_tree, data = pickle.load(f)
      return jax.export.deserialize(bytearray(data)), out_tree
    except Exception:  # pylint: disable=broad-except
      return None, None     # absent, torn or of another JAX: traced again and rewritten

  def _write(self, path: str, exported, out_tree) -> None:
    try:
      os.makedirs(self.directory, exist_ok=True)
      fd, tmp = tempfile.mkstemp(dir=self.directory, prefix='.tmp-')
      with os.fdopen(fd, 'wb') as f:
        pickle.dump((out_tree, bytes(exported.serialize())), f)
      os.replace(tmp, path)
    except OSError:
      pass                  # a store that cannot be written only costs the next run time


def _export_flat(fn: Callable, leaves: list, in_tree):
  """(`jax.export` of `fn` over the flat `leaves` of its arguments, the tree of
  its outputs): flat, so that no pytree node type needs a serialisation."""
  box = {}

  def flat(*xs):
    out = fn(*jax.tree_util.tree_unflatten(in_tree, xs))
    out_leaves, box['out_tree'] = jax.tree_util.tree_flatten(out)
    return out_leaves
  exported = jax.export.export(jax.jit(flat))(*leaves)
  return exported, box['out_tree']


class Precompiler:
  """A pool of threads compiling programs of jitted functions ahead of their
  first call (`wrap`). Programs are compiled in the order they are asked for."""

  def __init__(self, workers: Optional[int] = None):
    """workers: programs compiled at once (None: `default_workers()`; 0: none
    ahead of time, each compiles at its first call)."""
    workers = default_workers() if workers is None else workers
    self._pool = (concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix='nar-compile')
                  if workers > 0 else None)
    self._closed = self._pool is None

  def wrap(self, fn: Callable, store: Optional[ProgramStore] = None, name: str = '',
           donate_argnums: tuple = ()) -> 'Precompiled':
    """`fn` (a `jax.jit` function) with ahead-of-time compilation; with a
    `store`, its programs go through it as `name` (`fn`'s `donate_argnums`
    repeated: the store's program donates them too)."""
    return Precompiled(fn, self, store, name or getattr(fn, '__name__', 'fn'), donate_argnums)

  def _submit(self, job: Callable) -> Optional[concurrent.futures.Future]:
    if self._closed:
      return None
    return self._pool.submit(job)

  def close(self) -> None:
    """Stops compiling what has not started (programs asked for later are
    compiled at their first call, as without a precompiler) and waits for the
    compilations under way: no thread of a finished run keeps compiling beside
    what the process does next."""
    self._closed = True
    if self._pool is not None:
      self._pool.shutdown(wait=True, cancel_futures=True)


class Precompiled:
  """A jitted function whose programs may be compiled ahead of time.

  `precompile(*args)` starts compiling the program of `args`' signature
  (arrays or `jax.ShapeDtypeStruct`s; their values are not read) in the
  precompiler's threads; a call with that signature waits for it and runs it,
  a call with another signature runs `fn` itself (compiling as usual)."""

  def __init__(self, fn: Callable, precompiler: Precompiler,
               store: Optional[ProgramStore] = None, name: str = 'fn',
               donate_argnums: tuple = ()):
    self.fn = fn
    self._precompiler = precompiler
    self._store = store
    self._name = name
    self._donate = donate_argnums
    self._programs: dict = {}
    self._lock = threading.Lock()

  def _compile(self, abstract: tuple):
    if self._store is not None:
      return self._store.compile(self.fn, abstract, self._name, self._donate)
    return self.fn.lower(*abstract).compile()

  def precompile(self, *args) -> bool:
    """Starts compiling for `args`' signature; False if it cannot be (not all
    arrays, already asked for, or the precompiler is closed)."""
    if not _all_arrays(args):
      return False
    key = signature(args)
    abstract = jax.tree_util.tree_map(_abstract, args)
    with self._lock:
      if key in self._programs:
        return False
      future = self._precompiler._submit(  # pylint: disable=protected-access
          lambda: self._compile(abstract))
      if future is None:
        return False
      self._programs[key] = future
    return True

  def ready(self, *args) -> Optional[bool]:
    """Whether the program of `args` is compiled (None: it was not asked for)."""
    future = self._programs.get(signature(args))
    return None if future is None else future.done()

  def __call__(self, *args):
    if not _all_arrays(args):
      return self.fn(*args)
    key = signature(args)
    future = self._programs.get(key)
    if future is None or future.cancelled():
      if self._store is None:
        return self.fn(*args)
      # Not asked for ahead of time: compiled now, through the store all the same.
      program = self._compile(jax.tree_util.tree_map(_abstract, args))
      done = concurrent.futures.Future()
      done.set_result(program)
      with self._lock:
        self._programs[key] = done
      return program(*args)
    return future.result()(*args)
