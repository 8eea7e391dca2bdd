#!/usr/bin/env bash
# Download, here, the wheels a lent GPU machine lacks for tools/gpu_slot.sh into .whl/ (git-ignored via
# .git/info/exclude); pass `carry: [".whl"]` to the device tool. That machine's image has Python 3.12 with a
# CUDA torch, numpy, pyarrow, safetensors, einops, rich, tqdm, yaml, scipy and PIL, but not these.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PLATFORMS=""
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
  PLATFORMS="$PLATFORMS --platform $p"
done
# shellcheck disable=SC2086
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  $PLATFORMS -d .whl av bm25s PyStemmer orjson
ls -l .whl
