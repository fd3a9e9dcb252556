#!/usr/bin/env bash
# GPU figures on a bare CUDA machine with this checkout, in one go (budget: under 8 minutes on one H200).
#
#   bench/gpu.sh            # writes bench/results/gpu-latest.json (+ dated copy) and prints a table
#
# What it does:
#   1. venv from requirements.lock if there is none (pip's cache keeps the torch wheels), then the GPU
#      extras: onnxruntime-gpu in place of the CPU wheel (same module) and TensorRT for its provider;
#   2. local stack install (Kafka jars from Maven Central, redis-server from apt), as `make setup` does;
#   3. bench/gpu_bench.py: model-only images/s at batch 64/128/256 for eager bf16 (`torch`), compiled
#      (`torch-compile`) and TensorRT fp16 (`tensorrt`, ONNX Runtime's TensorRT provider); GPU JPEG
#      decode images/s of 1 MP JPEGs (nvJPEG through torchvision.io.decode_jpeg on CUDA);
#   4. bench/run.py --device cuda: end-to-end events/s through the real worker and local stack.
# Nothing here asserts a time; a runtime that cannot load is reported as unavailable, not fatal.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=$VENV/bin/python
START=$(date +%s)

if [ ! -x "$PY" ]; then
  python3 -m venv "$VENV"
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q -r requirements.lock
  "$PY" -m pip install -q --no-deps --no-build-isolation -e .
fi
if ! "$PY" -c 'import onnxruntime as o, sys; sys.exit("CUDAExecutionProvider" not in o.get_available_providers())' 2>/dev/null; then
  "$PY" -m pip uninstall -q -y onnxruntime || true
  "$PY" -m pip install -q onnxruntime-gpu==1.31.1 tensorrt-cu13==11.4.0.106 || echo "GPU extras failed to install; tensorrt will be reported unavailable"
fi
# ONNX Runtime's TensorRT provider loads libnvinfer from the library path.
TRT_LIBS=$("$PY" -c 'import os, tensorrt_libs; print(os.path.dirname(tensorrt_libs.__file__))' 2>/dev/null || true)
export LD_LIBRARY_PATH="${TRT_LIBS}${TRT_LIBS:+:}${LD_LIBRARY_PATH:-}"
deploy/local/stack install
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

"$PY" -m model.export   # the ONNX graph TensorRT builds from (cached)
"$PY" bench/gpu_bench.py --batches 64,128,256 --runtimes torch,torch-compile,tensorrt
# End to end: fetch + decode on the CPU threads, model on the GPU; more fetch/decode threads than on CPU.
IMAGEGATE_FETCH_CONCURRENCY=${IMAGEGATE_FETCH_CONCURRENCY:-64} IMAGEGATE_MAX_IN_FLIGHT=${IMAGEGATE_MAX_IN_FLIGHT:-4096} \
IMAGEGATE_DECODE_QUEUE_SIZE=${IMAGEGATE_DECODE_QUEUE_SIZE:-1024} \
  "$PY" bench/run.py --device cuda --runtime "${IMAGEGATE_RUNTIME:-torch}" --runtimes "${IMAGEGATE_RUNTIME:-torch}" \
    --batch 128 --images 6000 --seconds 10 --cache-events 20000 --naive-events 50 --results-name gpu
echo "bench/gpu.sh took $(( $(date +%s) - START )) s"
