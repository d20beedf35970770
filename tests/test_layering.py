"""Imports run one way: every module of nar/, augment/ and experiments/ imports
only from its own layer or the layers below it, and no set of modules imports
itself in a circle. Imports inside functions count: they are the ones that hide
a circle until the function runs.

    base <- data <- augment <- model <- methods <- train <- experiments <- cli

A new module must be placed in LAYERS (the test fails on a module it does not know).
"""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ('nar', 'augment', 'experiments')

# Bottom first. A module named by its package ('augment') is the package's
# __init__; 'augment.*' places every module of that package.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # Plain data and settings: no JAX, no dm-clrs (the command line starts on these).
    ('base', ('nar', 'nar.catalogue', 'nar.config', 'nar.errors', 'nar.overrides',
              'nar.clrs_import', 'nar.digest', 'nar.registry',
              'nar.storage', 'nar.evaluations', 'nar.provenance', 'nar.preflight',
              'nar.progress', 'nar.arguments')),
    ('data', ('nar.sample', 'nar.batching', 'nar.data', 'nar.cache')),
    ('augment', ('augment', 'augment.*')),
    ('model', ('nar.layers', 'nar.processors', 'nar.model', 'nar.losses', 'nar.evaluation')),
    ('methods', ('nar.methods', 'nar.hint_relic', 'nar.size_matched', 'nar.invariance')),
    # nar.train (the loop) imports nar.run_programs, nar.eval_run, nar.run_dir and
    # nar.run_model, never the reverse (the circle test keeps it so).
    ('train', ('nar.train', 'nar.run_programs', 'nar.eval_run', 'nar.run_dir', 'nar.run_model',
               'nar.checkpoint', 'nar.distributed', 'nar.interop', 'nar.tracking',
               'nar.memory', 'nar.compilation')),
    ('experiments', ('experiments', 'experiments.*')),
    ('cli', ('nar.cli',)),
]


def layer_of(module: str) -> int:
  for rank, (_, members) in enumerate(LAYERS):
    for m in members:
      if module == m or (m.endswith('.*') and module.startswith(m[:-1])):
        return rank
  raise KeyError(module)


def modules(root: str = ROOT) -> dict[str, str]:
  """Dotted module name -> file path, for every .py file of the packages."""
  out = {}
  for package in PACKAGES:
    for dirpath, _, files in os.walk(os.path.join(root, package)):
      for name in files:
        if not name.endswith('.py'):
          continue
        rel = os.path.relpath(os.path.join(dirpath, name), root)[:-3].split(os.sep)
        if rel[-1] == '__init__':
          rel = rel[:-1]
        out['.'.join(rel)] = os.path.join(dirpath, name)
  return out


def imports_of(module: str, path: str, known: set[str]) -> set[str]:
  """The project modules `module` imports, anywhere in its file (module level,
  functions, `if __name__ == '__main__'`, TYPE_CHECKING blocks alike)."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  is_package = os.path.basename(path) == '__init__.py'
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:   # relative: resolve against this module's package
        parts = module.split('.')
        parts = parts if is_package else parts[:-1]
        parts = parts[:len(parts) - (node.level - 1)]
        base = '.'.join(parts + ([base] if base else []))
      # `from pkg import sub` imports the module pkg.sub; `from pkg import name`, pkg.
      names = [f'{base}.{a.name}' if f'{base}.{a.name}' in known else base
               for a in node.names]
    else:
      continue
    for name in names:
      # `import a.b.c` of a project module: the longest known prefix.
      while name and name not in known:
        name = name.rpartition('.')[0]
      if name and name != module:
        found.add(name)
  return found


def import_graph(root: str = ROOT) -> dict[str, set[str]]:
  files = modules(root)
  return {m: imports_of(m, p, set(files)) for m, p in files.items()}


def find_cycle(graph: dict[str, set[str]]):
  """One import circle as [a, b, ..., a], or None."""
  WHITE, GREY, BLACK = 0, 1, 2
  colour = {m: WHITE for m in graph}
  stack: list[str] = []

  def visit(m):
    colour[m] = GREY
    stack.append(m)
    for n in sorted(graph[m]):
      if colour[n] == GREY:
        return stack[stack.index(n):] + [n]
      if colour[n] == WHITE:
        cycle = visit(n)
        if cycle:
          return cycle
    stack.pop()
    colour[m] = BLACK
    return None

  for m in sorted(graph):
    if colour[m] == WHITE:
      cycle = visit(m)
      if cycle:
        return cycle
  return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
  return [f'{m} ({LAYERS[layer_of(m)][0]}) imports {n} ({LAYERS[layer_of(n)][0]})'
          for m in sorted(graph) for n in sorted(graph[m]) if layer_of(n) > layer_of(m)]


GRAPH = import_graph()


def test_every_module_has_a_layer():
  unplaced = []
  for m in GRAPH:
    try:
      layer_of(m)
    except KeyError:
      unplaced.append(m)
  assert not unplaced, f'place these modules in LAYERS: {unplaced}'


def test_no_import_circle():
  cycle = find_cycle(GRAPH)
  assert cycle is None, 'import circle: ' + ' -> '.join(cycle)


def test_no_import_from_a_higher_layer():
  upward = upward_imports(GRAPH)
  assert not upward, 'imports against the layer order:\n' + '\n'.join(upward)


def test_the_graph_sees_function_level_imports():
  # The checks are only as good as the graph: a few edges that exist today.
  assert 'nar.cli' in GRAPH and 'experiments.sweep' in GRAPH['nar.cli']   # inside a function
  assert 'nar.registry' in GRAPH['nar.methods']                          # inside a function
  assert 'augment' in GRAPH['nar.hint_relic']                            # `import augment`
  assert 'nar.sample' in GRAPH['augment.core']                           # `from nar import sample`


@pytest.mark.parametrize('source', [
    'def f():\n  from nar.train import train\n',      # a function-level back-edge
    'import nar.cli\n',
])
def test_a_back_edge_is_caught(tmp_path, source):
  for package in PACKAGES:
    (tmp_path / package).mkdir()
    (tmp_path / package / '__init__.py').write_text('')
  (tmp_path / 'nar' / 'catalogue.py').write_text('')
  (tmp_path / 'nar' / 'train.py').write_text('from nar import catalogue\n')
  (tmp_path / 'nar' / 'cli.py').write_text('from nar import train\n')
  (tmp_path / 'nar' / 'sample.py').write_text(source)
  graph = import_graph(str(tmp_path))
  assert upward_imports(graph)
  (tmp_path / 'nar' / 'catalogue.py').write_text(source)
  graph = import_graph(str(tmp_path))
  assert find_cycle(graph) is not None
