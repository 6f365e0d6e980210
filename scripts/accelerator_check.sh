#!/usr/bin/env bash
# End-to-end check on an accelerator: training, zoo and evaluation on a GPU, timed, in one command.
#
#   bash scripts/accelerator_check.sh [--cpu | --cpu-full] [--out DIR] [--work DIR] [--wheelhouse DIR]
#
# On a GPU machine that has torch but not hyperpred's other dependencies, it first installs them
# offline from the wheelhouse (scripts/make_wheelhouse.sh builds it; default .whl) into a private
# folder, then runs scripts/accelerator_runs.py: the default experiment with trainer=gpu
# zoo.device=cuda, experiment=sine_generalization, experiment=digits_conv, the default with
# trainer.precision=bf16-mixed, and scripts/bench_zoo.py --device cuda. Every run's metrics.json and
# a timing table (timing.md, timing.json) land in DIR (default outputs/accelerator_check).
#
# --cpu is the dry mode: the same runs on the CPU with tiny sizes, so that the whole path (install
# check, runs, collection, table) is tested on a machine without a GPU. --cpu-full runs the full sizes
# on the CPU: the reference column of the GPU-vs-CPU table. Run folders and the zoo cache go to --work
# (default outputs/accelerator_check/work), so that DIR holds only the few result files.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODE=gpu
OUT="$ROOT/outputs/accelerator_check"
WORK="$ROOT/outputs/accelerator_check/work"
WHEELHOUSE="$ROOT/.whl"
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --cpu) MODE=cpu ;;
    --cpu-full) MODE=cpu-full ;;
    --work) WORK=$2; shift ;;
    --out) OUT=$2; shift ;;
    --wheelhouse) WHEELHOUSE=$2; shift ;;
    *) echo "accelerator_check.sh: unknown argument '$1' (use --cpu, --cpu-full, --out, --work, --wheelhouse, --help)" >&2
       exit 2 ;;
  esac
  shift
done
PY=${PYTHON:-python3}

if ! "$PY" -c "import hydra, omegaconf, wandb, pytorch_lightning, safetensors, sklearn" 2>/dev/null; then
  if ! ls "$WHEELHOUSE"/*.whl >/dev/null 2>&1; then
    echo "accelerator_check.sh: dependencies missing and no wheels in $WHEELHOUSE (run scripts/make_wheelhouse.sh)" >&2
    exit 1
  fi
  SITE=${TMPDIR:-/tmp}/hyperpred-site
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELHOUSE"/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  echo "installed $(ls "$WHEELHOUSE"/*.whl | wc -l) wheels from $WHEELHOUSE into $SITE"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # the project itself, from this tree
export PYTHONUNBUFFERED=1 WANDB_MODE=${WANDB_MODE:-offline}
mkdir -p "$OUT"
exec "$PY" "$ROOT/scripts/accelerator_runs.py" --mode "$MODE" --out "$OUT" --work "$WORK"
