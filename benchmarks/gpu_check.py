"""GPU check, prepared for when a CUDA machine is lent (under 8 minutes on one GPU):

1. training img/s of the default networks (``dcgan``, and ``resnet``/``sngan``) at 64 and
   128 px, fp32 against bf16 autocast, with and without channels-last, through ganpipe's own
   loop (seconds between metric rows after a warm-up, as the quality benchmark calibrates);
2. one quality curve at 64 px: the default recipe on the demo collection, judged at 1/4, 1/2
   and all of ``--curve-minutes`` (calibrated on this GPU), by ``quality_curves.py``.

    python benchmarks/gpu_check.py --out benchmarks/out/gpu   # on a CUDA machine
    python benchmarks/gpu_check.py --allow-cpu --steps 2 --warmup 1 --batch 4 \
        --curve-minutes 0.02   # a smoke run of every path, on a CPU

Writes ``throughput.json`` and the curve's ``results.json``, grids and plot under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from quality_curves import calibrate_ganpipe, prepare

NETWORKS = {"dcgan": [], "resnet": ["model.generator=resnet", "model.discriminator=sngan"]}


def throughput(args, work: Path) -> list[dict]:
    rows = []
    for size in (64, 128):
        col = prepare("demo", work, [f"dataset.image_size={size}"])
        for net, sets in NETWORKS.items():
            for precision in ("fp32", "bf16"):
                for channels_last in (False, True):
                    recipe = [*sets, f"train.precision={precision}",
                              f"train.channels_last={str(channels_last).lower()}",
                              f"train.batch_size={args.batch}"]  # fmt: skip
                    per_step = calibrate_ganpipe(col, f"gpu-{net}", recipe, args.steps,
                                                 args.warmup)  # fmt: skip
                    row = {"size": size, "network": net, "precision": precision,
                           "channels_last": channels_last, "batch": args.batch,
                           "img_per_s": round(args.batch / per_step, 1)}  # fmt: skip
                    print(row, flush=True)
                    rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/out/gpu")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--curve-minutes", type=float, default=3.0)
    parser.add_argument("--allow-cpu", action="store_true", help="run without CUDA (smoke test)")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.allow_cpu:
        sys.exit("gpu_check: no CUDA device here; run it on a GPU machine (or --allow-cpu)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ganpipe-gpu-"))
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    t0 = time.perf_counter()
    rows = throughput(args, work)
    record = {"date": time.strftime("%Y-%m-%d"), "device": device, "rows": rows,
              "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    (out / "throughput.json").write_text(json.dumps(record, indent=1))
    curve = [sys.executable, str(Path(__file__).with_name("quality_curves.py")),
             "--datasets", "demo", "--minutes", str(args.curve_minutes), "--references", "none",
             "--set", "dataset.image_size=64", "--out", str(out), "--work", str(work)]  # fmt: skip
    subprocess.run(curve, check=True)
    print(f"gpu_check: done in {time.perf_counter() - t0:.0f} s on {device}")


if __name__ == "__main__":
    main()
