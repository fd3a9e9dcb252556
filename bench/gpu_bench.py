"""GPU parts of bench/gpu.sh: model-only images/s per runtime and batch, and GPU JPEG decode.

  .venv/bin/python bench/gpu_bench.py [--batches 64,128,256] [--runtimes torch,torch-compile,tensorrt]

Writes bench/results/gpu-parts.json (bench/run.py --results-name gpu folds it into gpu.json).
Model inputs are real photos as uint8, so every figure includes the host-to-device copy of
what the worker would send. Decode: distinct 1 MP JPEGs decoded by nvJPEG in batches
(torchvision.io.decode_jpeg on CUDA), then resized to the model input on the GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import model_bench  # noqa: E402
from bench.common import distinct_copies  # noqa: E402


def gpu_decode(n: int = 1024, batch: int = 128, size: tuple[int, int] = (1152, 864), input_size: int = 512) -> dict:
    import torch
    import torch.nn.functional as F
    from torchvision.io import decode_jpeg

    with tempfile.TemporaryDirectory() as tmp:
        datas = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8)
                 for p in distinct_copies(Path(tmp), n, size, prefix="g")]
    res = {}
    for resize in (False, True):
        decode_jpeg(datas[:batch], device="cuda")  # warm-up (nvJPEG handles)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        done = 0
        for i in range(0, n, batch):
            imgs = decode_jpeg(datas[i:i + batch], device="cuda")
            if resize:
                imgs = [F.interpolate(im[None].float(), size=(input_size, input_size), mode="bicubic",
                                      antialias=True).clamp(0, 255).to(torch.uint8) for im in imgs]
            done += len(imgs)
        torch.cuda.synchronize()
        res["decode_resize_images_per_s" if resize else "decode_images_per_s"] = round(done / (time.perf_counter() - t0), 1)
    res["jpeg"] = f"{size[0]}x{size[1]}"
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="64,128,256")
    ap.add_argument("--runtimes", default="torch,torch-compile,tensorrt")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    import torch

    out: dict = {"gpu": torch.cuda.get_device_name(0), "model_images_per_s": {}}
    for b in (int(v) for v in args.batches.split(",")):
        rates = model_bench.measure(args.runtimes.split(","), b, args.rounds, device="cuda:0")
        out["model_images_per_s"][str(b)] = {k: round(v, 1) for k, v in rates.items()}
        print(f"batch {b}: {out['model_images_per_s'][str(b)]}", flush=True)
    out["jpeg_decode"] = gpu_decode()
    print(f"GPU JPEG decode: {out['jpeg_decode']}", flush=True)
    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "gpu-parts.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
