#!/usr/bin/env bash
# There, on the GPU machine, as the device tool's one command (carry: .whl):
#     bash benchmarks/gpu_run.sh
# Installs the carried wheels beside the image's packages, puts bushu's source on the path (no
# install), runs benchmarks/gpu_check.py and benchmarks/gpu_generate.py and leaves their tables
# and logs under $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
out=${OUT:-out/gpu}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" | tee -a "$out/gpu.txt"
python3 benchmarks/gpu_check.py --out "$out" "$@" 2>&1 | tee "$out/gpu_check.log"
# Generation (issue 12): bushu's engine in bf16 with a static cache and CUDA graphs vs transformers
# generate(), 64 streams of 128 + 128 tokens; its table goes to $OUT/gpu_generate.md.
python3 benchmarks/gpu_generate.py --out "$out" 2>&1 | tee "$out/gpu_generate.log"
