"""Triton vs local, measured (a benchmark, not a test): `python -m ovsam_model.benchmark.triton_bench`.

1. Prompt latency at 10 Hz, 640x480: a new frame every 100 ms and one click on it; the latency is
   from the frame's arrival to the click's answer (encode the frame + decode the click + masks and
   label), local model vs the Triton client, in alternating rounds so that both see the same load
   of a shared machine.
2. The feature cache with the server: a second click on an already encoded frame, and where its time
   goes (the client's wall time against the server's own compute time for the same requests, from
   Triton's statistics), with the bytes of one frame's features, which that request uploads.
3. Throughput: 1, 2 and 4 client processes, each sending new frames (one click each) as fast as it is
   answered, for `--seconds`; frames answered per second in total, with the image side's dynamic
   batching on and off (two repositories, a server start each).

The server is the one bundled in nvidia-pytriton (scripts/setup-triton), Python backend, on this
machine's CPU; `--server HOST:PORT` measures an existing server instead (a GPU server; its
repository decides whether the image side batches).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ovsam_model.benchmark.statistics import latency_summary

WIDTH, HEIGHT = 640, 480


def _frames(count: int, seed: int = 0) -> list[np.ndarray]:
    from ovsam_model.modeling.ovsam import resize_like_official
    from ovsam_model.synthetic import generate_scene

    rng = np.random.default_rng(seed)
    return [resize_like_official(generate_scene(rng, size=256, max_objects=4).image, HEIGHT, WIDTH)
            for _ in range(count)]


def _click(index: int):
    from ovsam_model.prompts import PromptSpec

    return PromptSpec(f"click{index}", points=np.array([[WIDTH / 2 + (index % 7) * 10, HEIGHT / 2]]))


def _predictor(model: str, server: str | None):
    from ovsam_model.build import build_predictor

    return build_predictor(model, device="cpu", inference_server=server or "", server_timeout_s=60.0)


def stream_latency(samples: tuple[list[float], list[float], int], frames: int) -> dict[str, Any]:
    latencies, second_click, skipped = samples
    return {"new_frame_click": latency_summary(latencies), "cached_frame_click": latency_summary(second_click),
            "frames_skipped": skipped, "frames": frames}


def stream_samples(predictor: Any, frames: list[np.ndarray], rate_hz: float) -> tuple[list[float], list[float], int]:
    """Frames arrive every 1/rate_hz s; as the node does, each round takes the newest frame (older
    ones it missed are skipped, counted) and one click on it. Latency: ms from that frame's arrival
    to the click's answer. Then a second click on the same frame (its features come from the cache)."""
    period = 1.0 / rate_hz
    latencies, second_click = [], []
    skipped, last = 0, -1
    start = time.perf_counter()
    while True:
        index = int((time.perf_counter() - start) / period)
        if index == last:  # the newest frame is done: wait for the next one
            time.sleep(max(0.0, start + (index + 1) * period - time.perf_counter()))
            continue
        if index >= len(frames):
            break
        skipped += index - last - 1
        last = index
        arrived = start + index * period
        key = ("frame", index)
        predictor.set_image(frames[index], key=key)
        predictor.predict([_click(index)], key)
        latencies.append((time.perf_counter() - arrived) * 1000)
        began = time.perf_counter()
        predictor.predict([_click(index + 1)], key)
        second_click.append((time.perf_counter() - began) * 1000)
    return latencies, second_click, skipped


def _server_compute_ms(url: str) -> dict[str, float]:
    """Per model: the server's mean compute time per request (input + infer + output), in ms."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url)
    result = {}
    for entry in client.get_inference_statistics()["model_stats"]:
        stats = entry["inference_stats"]
        count = int(stats["success"]["count"])
        if not count:
            continue
        nanoseconds = sum(int(stats[part]["ns"]) for part in ("compute_input", "compute_infer", "compute_output"))
        result[entry["name"]] = nanoseconds / count / 1e6
    return result


def _client_loop(model: str, url: str, seconds: float, seed: int, ready: Any, go: Any, queue: Any) -> None:
    import torch

    torch.set_num_threads(1)  # the clients' own work (resize, upsampling) should not crowd the server
    predictor = _predictor(model, url)
    frames = _frames(8, seed=seed)
    predictor.set_image(frames[0], key="warm")
    predictor.predict([_click(0)], "warm")
    ready.put(seed)
    go.wait()
    answered, failures, index = 0, 0, 0
    end = time.time() + seconds
    while time.time() < end:
        key = (seed, index)
        try:
            predictor.set_image(frames[index % len(frames)], key=key)
            predictor.predict([_click(index)], key)
            answered += 1
        except RuntimeError:
            failures += 1
        index += 1
    queue.put((answered, failures))


def throughput(model: str, url: str, clients: int, seconds: float) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    queue, ready, go = context.Queue(), context.Queue(), context.Event()
    processes = [context.Process(target=_client_loop, args=(model, url, seconds, seed, ready, go, queue))
                 for seed in range(clients)]
    for process in processes:
        process.start()
    for _ in processes:  # every client loads its model first, then they start together
        ready.get(timeout=600)
    go.set()
    results = [queue.get(timeout=seconds + 300) for _ in processes]
    for process in processes:
        process.join(30)
    answered = sum(r[0] for r in results)
    return {"clients": clients, "frames_per_s": answered / seconds, "failures": sum(r[1] for r in results)}


def compare_latency(model: str, url: str, frames: list[np.ndarray], rate_hz: float,
                    rounds: int = 4) -> dict[str, Any]:
    """The 10 Hz stream, local and through Triton in alternating rounds (each goes first in half)."""
    predictors = {"local": _predictor(model, None), "triton": _predictor(model, url)}
    samples: dict[str, tuple[list[float], list[float], int]] = {name: ([], [], 0) for name in predictors}
    for predictor in predictors.values():
        predictor.set_image(frames[0], key="warm")
        predictor.predict([_click(0)], "warm")
    chunk = max(1, len(frames) // rounds)
    for round_index in range(rounds):
        names = list(predictors) if round_index % 2 == 0 else list(reversed(predictors))
        for name in names:
            latencies, second, skipped = stream_samples(predictors[name], frames[round_index * chunk:
                                                                                 (round_index + 1) * chunk], rate_hz)
            kept = samples[name]
            samples[name] = (kept[0] + latencies, kept[1] + second, kept[2] + skipped)
    features = predictors["triton"].cached_image().features
    feature_bytes = int(sum(t.numel() * t.element_size() for t in (features.embedding, *features.fpn)))
    result: dict[str, Any] = {name: stream_latency(samples[name], chunk * rounds) for name in predictors}
    result["feature_bytes_per_frame"] = feature_bytes
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ovsam-shapes")
    parser.add_argument("--server", default=None, help="an existing server (host:port); default: start the bundled one")
    parser.add_argument("--frames", type=int, default=100, help="frames of the 10 Hz stream")
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each throughput run")
    parser.add_argument("--clients", default="1,2,4")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    # One thread everywhere (local model, clients, and the server's stubs, which inherit this
    # environment): on a small shared machine more threads than cores make every figure noise.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

    from ovsam_model.triton.local_server import LocalTritonServer
    from ovsam_model.triton.repository import RepositoryOptions, write_repository

    machine = (f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, no GPU used, "
               f"load average {os.getloadavg()[0]:.1f} at the start")
    report: dict[str, Any] = {"machine": machine, "model": args.model, "frame": f"{WIDTH}x{HEIGHT}"}
    frames = _frames(args.frames, seed=1)
    workdir = Path(tempfile.mkdtemp(prefix="ovsam-triton-bench-"))
    # An existing server is measured once, as it is configured; the bundled one with batching on and off.
    batching = (True, False) if not args.skip_throughput and args.server is None else (True,)
    for dynamic in batching:
        server = None
        url = args.server
        if url is None:
            repository = write_repository(args.model, workdir / f"repo-{dynamic}",
                                          options=RepositoryOptions(dynamic_batching=dynamic))
            server = LocalTritonServer(repository, log_path=workdir / f"server-{dynamic}.log").start(600)
            url = server.url
        try:
            if dynamic:
                report.update(compare_latency(args.model, url, frames, args.rate))
                report["server_compute_ms_per_request"] = _server_compute_ms(url)
                print(json.dumps(report, indent=1), flush=True)
            if not args.skip_throughput:
                runs = [throughput(args.model, url, int(n), args.seconds) for n in args.clients.split(",")]
                label = "server" if args.server else f"dynamic_batching_{'on' if dynamic else 'off'}"
                report[f"throughput_{label}"] = runs
                print(json.dumps(runs), flush=True)
        finally:
            if server is not None:
                server.stop()
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
