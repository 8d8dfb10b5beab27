#!/usr/bin/env bash
# Here, before a GPU run: download the wheels bushu needs that the GPU machine's image lacks
# (its python3 is 3.12 with torch, onnxruntime, typer, rich, httpx, aiohttp, safetensors …;
# see the device tool's KINDS.md) into .whl/, which git ignores and the run carries.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
  starlette==1.10.0 uvicorn==0.54.0 httptools==0.9.0 orjson==3.13.0
ls .whl
