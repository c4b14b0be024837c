"""Several cameras' frames through the image encoder: one batch against one frame at a time.

    python -m ovsam_model.benchmark.batched_encode [--model ovsam-shapes] [--cameras 2] [--repeats 20]
                                                   [--device auto] [--backend torch] [--json OUT]

What a node with several cameras gains when their frames wait together (ovsam_ros/worker.py): each
repeat encodes `--cameras` fresh frames (640x480 random pixels, new cache keys, so nothing is cached)
once with `OVSAMPredictor.set_images` (one batch) and once with `set_image` per frame, in alternating
order so that a slow spell of the machine falls on both. Printed: the median and p95 of each and the
ratio batched / one at a time (below 1: the batch is faster). The weights are the model's shipped or
random ones: the cost does not depend on them.
"""
from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from ovsam_model.benchmark.timing import Stopwatch, machine_info, write_figures
from ovsam_model.predictor import OVSAMPredictor


def random_frames(count: int, seed: int, height: int = 480, width: int = 640) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def bench_batched_encode(predictor: OVSAMPredictor, cameras: int = 2, repeats: int = 20,
                         warmup: int = 2) -> dict[str, Any]:
    """Median/p95 ms of `cameras` frames encoded as one batch and one at a time, and their ratio."""
    if cameras < 2:
        raise ValueError(f"cameras must be at least 2 to compare a batch with single frames, got {cameras}")
    watch = Stopwatch(predictor.device)
    for repeat in range(warmup + repeats):
        frames = random_frames(cameras, seed=repeat)
        record = repeat >= warmup
        groups = [f"camera{i}" for i in range(cameras)]

        def batched() -> None:
            predictor.set_images(frames, [("batched", repeat, i) for i in range(cameras)], cache_groups=groups)

        def one_at_a_time() -> None:
            for i, frame in enumerate(frames):
                predictor.set_image(frame, key=("single", repeat, i), cache_group=groups[i])

        runs = [("batched", batched), ("one_at_a_time", one_at_a_time)]
        for name, run in runs if repeat % 2 == 0 else runs[::-1]:
            watch.measure(name, run, record=record)
        predictor.clear_cache()
    summary = watch.summary()
    return {
        "cameras": cameras,
        "repeats": repeats,
        "batched_ms": summary["batched"],
        "one_at_a_time_ms": summary["one_at_a_time"],
        "ratio_batched_to_one_at_a_time": summary["batched"]["p50_ms"] / summary["one_at_a_time"]["p50_ms"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ovsam-shapes")
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = OVSAMPredictor.from_pretrained(args.model, device=args.device, backend=args.backend,
                                               cache_size=2 * args.cameras)
    started = time.monotonic()
    result = bench_batched_encode(predictor, args.cameras, args.repeats)
    result.update(model=args.model, backend=predictor.backend.describe(), machine=machine_info(),
                  wall_s=round(time.monotonic() - started, 1))
    batched, single = result["batched_ms"], result["one_at_a_time_ms"]
    print(f"{args.model} on {predictor.backend.describe()}: {args.cameras} frames 640x480")
    print(f"  one batch        p50 {batched['p50_ms']:8.1f} ms  p95 {batched['p95_ms']:8.1f} ms")
    print(f"  one at a time    p50 {single['p50_ms']:8.1f} ms  p95 {single['p95_ms']:8.1f} ms")
    print(f"  ratio batch / one at a time (p50): {result['ratio_batched_to_one_at_a_time']:.2f}")
    write_figures(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
