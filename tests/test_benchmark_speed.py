"""The speed benchmark's defaults (its timings are never asserted: docs/speed.md)."""

from experiments.benchmark_speed import ONE_PER_FAMILY
from nar.catalogue import FAMILIES


def test_default_algorithms_are_one_of_each_clrs_family():
  family_of = {a: f for f, algorithms in FAMILIES.items() for a in algorithms}
  assert sorted(family_of[a] for a in ONE_PER_FAMILY) == sorted(FAMILIES)
