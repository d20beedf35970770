"""The name lists the command line uses without importing dm-clrs match dm-clrs."""

import inspect
import re
import subprocess
import sys

from nar import catalogue


def test_algorithms_and_families_are_clrs30():
  import clrs
  assert sorted(catalogue.CLRS30_ALGORITHMS) == sorted(clrs.CLRS_30_ALGS_SETTINGS)
  members = [a for fam in catalogue.FAMILIES.values() for a in fam]
  assert sorted(members) == sorted(catalogue.CLRS30_ALGORITHMS)     # each in one family


def test_processor_kinds_are_dm_clrs_kinds():
  from clrs._src import processors
  source = inspect.getsource(processors.get_processor_factory)
  assert set(catalogue.PROCESSOR_KINDS) == set(re.findall(r"kind == '(\w+)'", source))


def test_help_and_argument_checks_do_not_import_dm_clrs():
  code = ('import sys\n'
          'from nar import cli\n'
          'try:\n'
          '  cli.main(["sweep", "--help"])\n'
          'except SystemExit:\n'
          '  pass\n'
          'from nar.config import TrainConfig\n'
          'TrainConfig(algorithm="dfs").validate()\n'
          'print("clrs" in sys.modules, "jax" in sys.modules)\n')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  assert out.stdout.strip().splitlines()[-1] == 'False False'


def _hint_table() -> dict:
  from nar.sample import processed_spec
  return {alg: tuple(f'{k}:{loc}/{typ}' for k, (stage, loc, typ) in processed_spec(alg).items()
                     if stage == 'hint')
          for alg in catalogue.CLRS30_ALGORITHMS}


def test_hints_are_the_processed_specs():
  expected = _hint_table()
  table = ('HINTS: Mapping[str, tuple[str, ...]] = {\n'
           + ''.join(f'    {a!r}: {h!r},\n' for a, h in expected.items()) + '}')
  assert dict(catalogue.HINTS) == expected, (
      'nar/catalogue.py HINTS differs from dm-clrs; its value now (wrap the lines):\n' + table)
  assert tuple(catalogue.HINTS) == catalogue.CLRS30_ALGORITHMS


def test_augmented_algorithms_are_those_with_a_rule():
  import augment
  assert list(catalogue.AUGMENTED) == augment.supported()
