#!/bin/bash
# Run here (the CPU machine, with the package registries) before a GPU call: the packages the
# device image lacks, as wheels for its Python 3.12, into .whl/ (git-ignored; name `.whl` and
# `.gpu` in the run tool's carry), and the TensorFlow import shim into .gpu/tfstub.
set -euo pipefail
cd "$(dirname "$0")/../../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
rm -rf .whl && mkdir -p .whl .gpu
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl \
  dm-clrs==2.0.3 dm-haiku==0.0.17 dm-tree jmp ml_collections
rm -rf .gpu/tfstub && cp -r results/gpu/recipe/tfstub .gpu/tfstub
ls .whl; du -sh .whl
