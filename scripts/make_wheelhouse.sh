#!/usr/bin/env bash
# Build a wheelhouse for an offline install on an accelerator machine that has torch but not the rest.
#
#   bash scripts/make_wheelhouse.sh [DIR]        # default DIR: .whl (git-ignored)
#
# Run it on a machine with package-index access. It downloads wheels of hyperpred's dependencies for
# the accelerator's Python (PYTHON_VERSION, default 3.12, manylinux x86_64), builds the one that ships
# only as a source archive (antlr4-python3-runtime, needed by Hydra), and then drops every package that
# a CUDA torch image already has (IMAGE_HAS below, the image's package list), so the folder stays at
# tens of MB. scripts/accelerator_check.sh installs from it with --no-index.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.whl}
PYTHON_VERSION=${PYTHON_VERSION:-3.12}
PY=${PYTHON:-python3}

# What a CUDA torch image (torch, lightning, scientific Python) already holds: left out of the wheelhouse.
IMAGE_HAS="anyio certifi charset-normalizer click contourpy cycler filelock fonttools fsspec h11 httpcore httpx
idna jinja2 joblib kiwisolver lightning lightning-utilities markdown-it-py markupsafe matplotlib mdurl mpmath
networkx numpy packaging pillow protobuf psutil pygments pyparsing python-dateutil pytorch-lightning pyyaml
requests rich safetensors scikit-learn scipy six sniffio sympy threadpoolctl torch torchmetrics tqdm triton
typing-extensions urllib3 xxhash"

mkdir -p "$DIR"
# The only dependency without a wheel on the index: pure Python, so a wheel built here works anywhere.
"$PY" -m pip wheel -q --no-deps -w "$DIR" "antlr4-python3-runtime==4.9.3"
"$PY" -m pip download -q --only-binary=:all: --find-links "$DIR" -d "$DIR" \
  --python-version "$PYTHON_VERSION" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  "hydra-core>=1.3.2,<1.4" "omegaconf>=2.3,<2.4" "wandb>=0.16" "safetensors>=0.4" "filelock>=3.12" "rich>=13"

for wheel in "$DIR"/*.whl; do
  name=$(basename "$wheel" | cut -d- -f1 | tr '_A-Z' '-a-z')
  for have in $IMAGE_HAS; do
    if [ "$name" = "$have" ]; then rm -f "$wheel"; fi
  done
done
echo "wheelhouse $DIR: $(ls "$DIR"/*.whl | wc -l) wheels, $(du -sh "$DIR" | cut -f1)"
