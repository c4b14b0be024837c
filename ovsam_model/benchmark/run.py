"""Per-stage latency of OV-SAM for each configuration, backend and device, against SAM + CLIP.

One frame (frame_size, random pixels; speed does not depend on content or weights, except
postprocess_N: see below) is encoded `repeats` times after `warmup` untimed runs; after each
encoding, N single-point prompts are decoded, named and post-processed for every N in
prompt_counts. Stages:
  preprocess    resize, normalise, pad (OVSAM.preprocess)
  backbone      CLIP trunk           } torch: timed apart; exported backends run them as one graph
  adapter       SAM2CLIP adapter     } (image_part), split afterwards from an onnxruntime profile
  fpn           FPN                  }
  decode_N      prompt encoder + mask decoder + region pooling (the backend's decode)
  recognition_N cosine against a vocabulary (K classes x P synonyms), softmax, top 5
  postprocess_N masks to the frame's resolution, thresholded, scored, boxed (the predictor's
                ovsam_model.mask_postprocess: its cost grows with each mask's extent, and random
                weights scatter foreground over the whole frame, its slowest case)
frame_N is their per-iteration sum; prompt_side_N the sum of the last three. Medians and p95 are
over the repeats. The SAM + CLIP baseline (benchmark_baseline) runs on the same frame and points.
Message conversion and publishing belong to the node: `python -m ovsam_ros.tools.bench`.
"""
from __future__ import annotations

import gc
import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from ovsam_model.backends import available_backends, create_backend
from ovsam_model.backends.torch_backend import TorchBackend
from ovsam_model.benchmark.baseline import build_baseline, time_baseline
from ovsam_model.benchmark.report import evaluate_targets, ratios_to_baseline
from ovsam_model.benchmark.timing import PeakMemory, Stopwatch, machine_info
from ovsam_model.config import get_config
from ovsam_model.mask_postprocess import frame_masks
from ovsam_model.modeling.ovsam import OVSAM, ImageFeatures, build_model

logger = logging.getLogger(__name__)

FULL_SIZE = 512  # configurations with at least this input size use the full-size repeat counts
TOP_K = 5


@dataclass
class BenchOptions:
    models: tuple[str, ...] = ("ovsam-shapes", "ovsam-rn50x16")
    backends: tuple[str, ...] | None = None       # None: every backend present
    devices: tuple[str, ...] | None = None        # None: cpu, and cuda when there is one
    prompt_counts: tuple[int, ...] = (1, 10, 50)
    repeats: int = 10
    warmup: int = 2
    full_size_repeats: int = 3                    # the 1024-input model costs tens of seconds a frame on a CPU
    full_size_warmup: int = 1
    frame_size: tuple[int, int] = (480, 640)      # (height, width) of the camera frame
    vocabulary_size: int = 1203                   # LVIS
    synonyms: int = 2
    baseline: str = "auto"                        # auto | vit_h | miniature | none
    baseline_repeats: int = 1
    baseline_warmup: int = 0
    gpu_precision: str = "fp16"
    compile: bool = False                         # also torch.compile the image part on a GPU
    onnx_dir: str | None = None                   # root for ONNX exports (default: the cache)
    seed: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Variant:
    backend: str
    device: str
    precision: str = "fp32"
    channels_last: bool = False
    compile_image: str | None = None

    @property
    def label(self) -> str:
        parts = [self.backend, self.precision]
        if self.channels_last:
            parts.append("channels_last")
        if self.compile_image:
            parts.append(f"compile:{self.compile_image}")
        return f"{' '.join(parts)} @ {self.device}"


def plan_variants(options: BenchOptions) -> list[Variant]:
    backends = list(options.backends or available_backends())
    devices = list(options.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else [])))
    variants: list[Variant] = []
    for device in devices:
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device cuda was asked for, but this torch sees no CUDA GPU")
        for backend in backends:
            if backend == "torch":
                variants.append(Variant("torch", device))
                if device == "cuda":
                    variants.append(Variant("torch", device, options.gpu_precision, channels_last=True))
                    if options.compile:
                        variants.append(Variant("torch", device, options.gpu_precision, True, "reduce-overhead"))
            elif backend == "onnxruntime":
                if device == "cpu" or _onnxruntime_has_cuda():
                    variants.append(Variant("onnxruntime", device))
            elif backend == "tensorrt":
                if device == "cuda":
                    variants.append(Variant("tensorrt", device, options.gpu_precision))
            else:
                raise ValueError(f"unknown backend {backend!r}")
    return variants


def _onnxruntime_has_cuda() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def make_frame(options: BenchOptions) -> np.ndarray:
    rng = np.random.default_rng(options.seed)
    height, width = options.frame_size
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def make_points(options: BenchOptions) -> dict[int, np.ndarray]:
    """N foreground points per prompt count, in frame pixels, the same for every model and the baseline."""
    rng = np.random.default_rng(options.seed + 1)
    height, width = options.frame_size
    return {count: rng.uniform((0, 0), (width - 1, height - 1), size=(count, 2)).astype(np.float32)
            for count in options.prompt_counts}


def make_vocabulary(options: BenchOptions, dim: int, device: torch.device) -> Tensor:
    generator = torch.Generator().manual_seed(options.seed + 2)
    embeddings = torch.randn(options.vocabulary_size, options.synonyms, dim, generator=generator)
    return torch.nn.functional.normalize(embeddings, dim=-1).to(device)


def cosine_class_scores(embeddings: Tensor, vocabulary: Tensor, multiplier: float = 100.0) -> tuple[Tensor, Tensor]:
    """Top-5 class probabilities and indices, OV-SAM's naming rule (background logit 0 appended)."""
    regions = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    logits = torch.einsum("nd,kpd->nkp", regions, vocabulary).amax(dim=-1) * multiplier
    logits = torch.cat([logits, logits.new_zeros((logits.shape[0], 1))], dim=1)
    probabilities = torch.softmax(logits, dim=-1)[:, :-1]
    return torch.topk(probabilities, k=min(TOP_K, probabilities.shape[1]), dim=-1)


def postprocess(model: OVSAM, mask_logits: Tensor, frame_hw: tuple[int, int]) -> list[tuple]:
    """What the predictor does before naming: masks at the frame's resolution, thresholded,
    scored and boxed (ovsam_model.mask_postprocess), as (mask, score, box) tuples."""
    return [(frame.mask, frame.score, frame.box) for frame in frame_masks(model, mask_logits, frame_hw)]


def _derive(samples: dict[str, list[float]], counts: tuple[int, ...]) -> None:
    """Per-iteration sums: image_part (torch), prompt_side_N and frame_N."""
    if "image_part" not in samples and "backbone" in samples:
        samples["image_part"] = [sum(parts) for parts in zip(samples["backbone"], samples["adapter"], samples["fpn"])]
    for count in counts:
        prompt_side = [sum(parts) for parts in zip(samples[f"decode_{count}"], samples[f"recognition_{count}"],
                                                     samples[f"postprocess_{count}"])]
        samples[f"prompt_side_{count}"] = prompt_side
        samples[f"frame_{count}"] = [a + b + c for a, b, c in zip(samples["preprocess"], samples["image_part"],
                                                                    prompt_side)]


def _ort_stage_shares(backend: Any, pixels: Tensor, directory: Path) -> dict[str, float]:
    """Share of the image graph's kernel time in backbone / adapter / fpn / other, from one profiled run."""
    session = backend.profiled_image_session(str(directory / "ort_profile"))
    session.run(None, backend.image_inputs(pixels))
    profile = Path(session.end_profiling())
    events = json.loads(profile.read_text())
    profile.unlink(missing_ok=True)
    totals: Counter = Counter()
    for event in events:
        name = event.get("name", "")
        if event.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        if name.startswith("/neck_student/"):
            totals["adapter"] += event["dur"]
        elif name.startswith("/fpn_neck/"):
            totals["fpn"] += event["dur"]
        elif name.startswith("/"):
            totals["backbone"] += event["dur"]
        else:  # layout conversions the optimiser inserted between kernels
            totals["other"] += event["dur"]
    whole = sum(totals.values()) or 1
    return {stage: totals[stage] / whole for stage in ("backbone", "adapter", "fpn", "other")}


def bench_variant(model: OVSAM, variant: Variant, frame: np.ndarray, points: dict[int, np.ndarray],
                  vocabulary: Tensor, options: BenchOptions, repeats: int, warmup: int,
                  scratch: Path) -> dict[str, Any]:
    """Time every stage of one (model, backend, device, precision) combination."""
    started = time.perf_counter()
    extra: dict[str, Any] = {}
    if variant.backend == "torch":
        backend = create_backend(model, "torch", variant.precision, channels_last=variant.channels_last,
                                 compile_image=variant.compile_image)
    elif variant.backend == "onnxruntime":
        onnx_dir = None
        if options.onnx_dir:
            from ovsam_model.backends.onnx_export import weights_fingerprint

            onnx_dir = Path(options.onnx_dir) / f"{model.config.name}-{weights_fingerprint(model)[:16]}"
        backend = create_backend(model, "onnxruntime", onnx_dir=onnx_dir)
    else:
        backend = create_backend(model, variant.backend, variant.precision, fallback=False)
    extra["setup_s"] = round(time.perf_counter() - started, 2)
    extra["backend"] = backend.describe()

    device = torch.device(variant.device)
    stopwatch = Stopwatch(device)
    memory = PeakMemory(device)
    frame_hw = (frame.shape[0], frame.shape[1])
    to_network = np.asarray(model.input_scales(*frame_hw), dtype=np.float32)  # x, y, as the predictor
    split_image = isinstance(backend, TorchBackend) and backend.compile_image is None
    memory.reset()
    with torch.no_grad():
        for iteration in range(warmup + repeats):
            record = iteration >= warmup
            pixels, _ = stopwatch.measure("preprocess", lambda: model.preprocess(frame), record)
            if split_image:
                levels = stopwatch.measure("backbone", lambda: backend.backbone(pixels), record)
                embedding = stopwatch.measure("adapter", lambda: backend.adapter(levels), record)
                pyramid = stopwatch.measure("fpn", lambda: backend.fpn(levels), record)
                features = ImageFeatures(embedding=embedding, fpn=pyramid, clip_last=levels[-1].float())
            else:
                features = stopwatch.measure("image_part", lambda: backend.encode_image(pixels), record)
            for count, frame_points in points.items():
                network_points = torch.from_numpy(frame_points * to_network).to(device)[:, None, :]
                output = stopwatch.measure(f"decode_{count}", lambda: backend.decode(features, network_points), record)
                stopwatch.measure(f"recognition_{count}", lambda: cosine_class_scores(
                    output.region_embedding, vocabulary, float(np.exp(model.config.logit_scale))), record)
                stopwatch.measure(f"postprocess_{count}", lambda: postprocess(model, output.mask_logits, frame_hw),
                                  record)
    peak = memory.read()
    if variant.backend == "onnxruntime":  # after the memory reading: the profiled session is a second copy
        extra["image_part_shares"] = _ort_stage_shares(backend, pixels, scratch)
    _derive(stopwatch.samples, options.prompt_counts)
    stages = stopwatch.summary()
    if "image_part_shares" in extra:
        for stage, share in extra["image_part_shares"].items():
            stages[f"{stage}_from_profile"] = {"p50_ms": share * stages["image_part"]["p50_ms"],
                                               "share": share}
    return {"model": model.config.name, "image_size": model.config.image_size, "variant": asdict(variant),
            "label": variant.label, "repeats": repeats, "warmup": warmup, "stages": stages, "memory": peak, **extra}


def run_benchmark(options: BenchOptions, log: Callable[[str], None] = print,
                  scratch: Path | None = None) -> dict[str, Any]:
    """Every requested model x variant, then the baseline; returns the JSON-ready results."""
    scratch = Path(scratch or Path.cwd())
    frame = make_frame(options)
    points = make_points(options)
    variants = plan_variants(options)
    results: dict[str, Any] = {"machine": machine_info(), "options": asdict(options), "runs": [], "baselines": []}
    log(f"[bench] {len(options.models)} model(s) x {len(variants)} variant(s): "
        f"{', '.join(v.label for v in variants)}; frame {options.frame_size[1]}x{options.frame_size[0]}, "
        f"prompts {list(options.prompt_counts)}")
    for model_name in options.models:
        config = get_config(model_name)
        full_size = config.image_size >= FULL_SIZE
        repeats = options.full_size_repeats if full_size else options.repeats
        warmup = options.full_size_warmup if full_size else options.warmup
        for device in dict.fromkeys(v.device for v in variants):
            torch.manual_seed(options.seed)
            model = build_model(config, device=device)
            vocabulary = make_vocabulary(options, config.text_dim, torch.device(device))
            for variant in (v for v in variants if v.device == device):
                log(f"[bench] {model_name} / {variant.label}: {warmup} warm-up + {repeats} timed frames")
                try:
                    run = bench_variant(model, variant, frame, points, vocabulary, options, repeats, warmup, scratch)
                except Exception as error:  # one failing backend must not lose the others
                    logger.exception("benchmark of %s / %s failed", model_name, variant.label)
                    results["runs"].append({"model": model_name, "label": variant.label, "variant": asdict(variant),
                                            "error": f"{type(error).__name__}: {error}"})
                    continue
                results["runs"].append(run)
                frame_key = f"frame_{options.prompt_counts[0]}"
                log(f"[bench]   {frame_key} median {run['stages'][frame_key]['p50_ms']:.1f} ms, "
                    f"image part {run['stages']['image_part']['p50_ms']:.1f} ms")
            del model
            gc.collect()
    kind = choose_baseline(options)
    if kind is not None:
        for device in dict.fromkeys(v.device for v in variants):
            results["baselines"].append(_run_baseline(kind, options, frame, points, torch.device(device), log))
    results["ratios_to_baseline"] = ratios_to_baseline(results)
    results["targets"] = evaluate_targets(results)
    results["machine"]["load_average_end"] = machine_info()["load_average"]
    return results


def choose_baseline(options: BenchOptions) -> str | None:
    if options.baseline == "none":
        return None
    if options.baseline == "auto":
        return "vit_h" if "ovsam-rn50x16" in options.models else "miniature"
    return options.baseline


def _run_baseline(kind: str, options: BenchOptions, frame: np.ndarray, points: dict[int, np.ndarray],
                  device: torch.device, log: Callable[[str], None]) -> dict[str, Any]:
    compared = get_config(options.models[0])
    torch.manual_seed(options.seed)
    started = time.perf_counter()
    baseline = build_baseline(kind, device, compared)
    setup_s = time.perf_counter() - started
    vocabulary = make_vocabulary(options, baseline.embed_dim, device)
    stopwatch = Stopwatch(device)
    memory = PeakMemory(device)
    log(f"[bench] baseline {baseline.description} on {device}: {options.baseline_warmup} warm-up + "
        f"{options.baseline_repeats} timed frames")
    memory.reset()
    time_baseline(baseline, frame, points, vocabulary, cosine_class_scores, stopwatch,
                  options.baseline_repeats, options.baseline_warmup)
    peak = memory.read()
    samples = stopwatch.samples
    for count in options.prompt_counts:
        samples[f"frame_{count}"] = [sum(parts) for parts in zip(
            samples["sam_encode"], samples[f"sam_decode_{count}"], samples[f"clip_crops_{count}"],
            samples[f"recognition_{count}"])]
    del baseline
    gc.collect()
    return {"kind": kind, "description": f"{kind}: " + _baseline_text(kind, compared.name), "device": str(device),
            "repeats": options.baseline_repeats, "warmup": options.baseline_warmup, "setup_s": round(setup_s, 2),
            "stages": stopwatch.summary(), "memory": peak}


def _baseline_text(kind: str, compared: str) -> str:
    if kind == "vit_h":
        return "segment_anything ViT-H (1024) + CLIP RN50x16 on each mask's crop (384), random weights"
    return f"miniature SAM + {compared}'s CLIP on crops: exercises the code path only, not the paper's comparison"
