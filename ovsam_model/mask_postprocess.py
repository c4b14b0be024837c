"""Decoder mask logits -> full-frame boolean masks, mask scores and tight boxes, computed only
where a mask can be foreground.

The reference (`full_frame_masks`, what the predictor did first) upsamples every mask twice with
bilinear interpolation (`OVSAM.postprocess_masks`: low-res -> SxS, crop the unpadded part, ->
the frame's HxW) and then scores and thresholds every pixel of the frame: about 2-4 ms a mask on
one CPU thread at 640x480, most of it on pixels far from the object.

`windowed_frame_masks` gives the same masks with less work. Bilinear interpolation makes each
output pixel a weighted mean (non-negative weights) of at most two source rows x two source
columns, so an output pixel none of whose sources is positive is not positive either, in floating
point too (products and sums of non-positive numbers with non-negative weights never round above
zero). Each mask's positive extent at low resolution therefore bounds which SxS pixels, and those
which frame pixels, can be foreground; only that window is interpolated, thresholded and scored,
and written into an otherwise zero frame. Pixels outside it are background and add nothing to a
mean over foreground pixels.

When a mask's window would cost more than the whole frame (foreground spread over most of it),
that mask takes the two whole resizes instead; thresholding, scoring and boxing stay cheaper
than the reference's.

The windows are computed by F.interpolate itself, one axis at a time, on the rows or columns
the window needs placed in an otherwise zero source (`resize_axis_window`): the same taps and
weights as the reference, blended in the same order (torch's CPU kernel blends columns first,
then rows). With torch 2.14 here the values are bit-identical to the reference whenever the
resized axes are at least 128 wide (every camera frame with the shipped models); below that
torch's kernel takes another code path for some of the shapes and values differ by rounding
(at most 3e-6 seen). Which taps each output reads is likewise read from F.interpolate
(`LinearAxis.of`), not re-derived. Scores differ from `mask_scores` in summation order only
(about 1e-7). tests/model/test_postprocess_speedup.py holds the contract: boxes identical,
scores within 1e-5, masks identical except where a logit is within 1e-4 of 0.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ovsam_model.mask_box import tight_box
from ovsam_model.modeling.foreground import FOREGROUND_LOGIT, foreground
from ovsam_model.segment_everything import mask_scores

if TYPE_CHECKING:
    from ovsam_model.modeling.ovsam import OVSAM

# The reference path upsamples this many masks at a time, bounding peak memory to about this
# many float images of the frame's size.
UPSAMPLE_CHUNK = 16


@dataclass
class FrameMask:
    """One mask at the frame's resolution."""

    mask: np.ndarray  # (H, W) bool
    score: float  # mean foreground probability inside the mask; 0.0 for an empty mask
    box: tuple[int, int, int, int] | None  # tight box x0, y0, x1, y1 (x1/y1 exclusive); None if empty


def frame_masks(model: "OVSAM", low_res_logits: torch.Tensor, frame_hw: tuple[int, int]) -> list[FrameMask]:
    """Masks, scores and boxes at the frame's (height, width) from decoder logits [N, 1, S/4, S/4].

    On the CPU only each mask's window is computed (`windowed_frame_masks`). On an accelerator
    the full-frame reference is kept: there the whole frame costs little, while per-mask windows
    would mean many tiny kernels and a device sync per mask."""
    if low_res_logits.device.type != "cpu":
        return full_frame_masks(model, low_res_logits, frame_hw)
    resized_hw = model.resized_shape(*frame_hw)
    return windowed_frame_masks(low_res_logits, model.config.image_size, resized_hw, frame_hw)


def full_frame_masks(model: "OVSAM", low_res_logits: torch.Tensor, frame_hw: tuple[int, int]) -> list[FrameMask]:
    """The reference: `OVSAM.postprocess_masks` over the whole frame, `mask_scores`, the official foreground rule."""
    results: list[FrameMask] = []
    for start in range(0, low_res_logits.shape[0], UPSAMPLE_CHUNK):
        logits = model.postprocess_masks(low_res_logits[start:start + UPSAMPLE_CHUNK].float(), frame_hw)[:, 0]
        scores = mask_scores(logits).cpu()
        masks = foreground(logits).cpu().numpy()
        for mask, score in zip(masks, scores):
            box = tight_box(mask)
            results.append(FrameMask(mask, float(score) if box is not None else 0.0, box))
    return results


@dataclass(frozen=True)
class LinearAxis:
    """Which source positions each output of a bilinear resize along one axis reads
    (`F.interpolate(mode="bilinear", align_corners=False)`): output o blends sources first[o]
    and last[o] (equal at the last source, else last = first + 1), both non-decreasing in o."""

    first: np.ndarray  # (outputs,) int64
    last: np.ndarray  # (outputs,) int64

    @staticmethod
    @functools.lru_cache(maxsize=32)
    def of(source_size: int, output_size: int, used_outputs: int | None = None) -> "LinearAxis":
        """The axis of a source_size -> output_size resize, over its first used_outputs outputs.

        The taps come from torch itself, not from re-deriving its formula: every source
        position is resized as a one-hot row, so row k of the result is non-zero exactly at the
        outputs that give source k a weight (the first tap's weight, 1 - fraction, is never 0)."""
        probe = torch.eye(source_size, dtype=torch.float32)[:, None, None, :]
        weights = F.interpolate(probe, (1, output_size), mode="bilinear", align_corners=False)[:, 0, 0, :used_outputs]
        first = (weights != 0).to(torch.uint8).argmax(dim=0).numpy()
        return LinearAxis(first, np.minimum(first + 1, source_size - 1))

    @property
    def size(self) -> int:
        return int(self.first.shape[0])

    def outputs_reading(self, first: int, last: int) -> tuple[int, int]:
        """[start, stop) of the outputs that read any source in [first, last] (may be empty)."""
        start = int(np.searchsorted(self.last, first, side="left"))
        stop = int(np.searchsorted(self.first, last, side="right"))
        return start, max(start, stop)

    def sources_read(self, start: int, stop: int) -> tuple[int, int]:
        """[first, stop) of the sources that outputs [start, stop) read; needs stop > start."""
        return int(self.first[start]), int(self.last[stop - 1]) + 1


def exact_prefix(source_size: int, output_size: int, outputs_needed: int) -> tuple[int, int]:
    """(sources, outputs): a prefix of a bilinear resize, at least outputs_needed long, that
    F.interpolate computes exactly as the whole resize, or the whole sizes if there is none shorter.

    torch places output o at source (o + 1/2) * source_size / output_size - 1/2, from the ratio of
    the sizes; a prefix whose sizes have the same ratio (whole periods of output_size / gcd) gets
    the same float ratio, so the same taps and weights, except that its last source is clamped:
    the margin keeps the outputs needed clear of it (they must not read beyond sources - 2)."""
    common = math.gcd(source_size, output_size)
    source_period, output_period = source_size // common, output_size // common
    wanted = outputs_needed + output_size // source_size + 2
    periods = -(-wanted // output_period)
    if periods * output_period >= output_size:
        return source_size, output_size
    return periods * source_period, periods * output_period


def resize_axis_window(block: torch.Tensor, dim: int, source_size: int, source_start: int, output_size: int,
                       outputs: tuple[int, int]) -> torch.Tensor:
    """Outputs [outputs) of a bilinear resize of one axis (dim 0: rows, 1: columns) of a 2-D
    source from source_size to output_size; the other axis is left as it is.

    `block` holds the source from position source_start along `dim`, and must hold every source
    those outputs read. It is placed in a zero source (the zeros are read only by outputs that
    are dropped) cut to the `exact_prefix` that ends after the window, so that F.interpolate
    samples exactly where it does for the whole source. Resizing the axes one after the other
    like this gives the values of resizing both at once: torch's kernel blends columns first,
    then rows, and an identity axis (weights 1 and 0) passes values through unchanged."""
    sources, computed = exact_prefix(source_size, output_size, outputs[1])
    block = block.narrow(dim, 0, min(block.shape[dim], sources - source_start))
    if source_start != 0 or block.shape[dim] != sources:
        shape = (sources, block.shape[1]) if dim == 0 else (block.shape[0], sources)
        padded = block.new_zeros(shape)
        padded.narrow(dim, source_start, block.shape[dim]).copy_(block)
        block = padded
    size = (computed, block.shape[1]) if dim == 0 else (block.shape[0], computed)
    resized = F.interpolate(block[None, None], size, mode="bilinear", align_corners=False)[0, 0]
    return resized.narrow(dim, outputs[0], outputs[1] - outputs[0])


@dataclass(frozen=True)
class _Resizes:
    """The two resizes of postprocessing, low-res -> SxS (of which only the unpadded part is
    used), then -> the frame, as axes, with the sizes they run between."""

    low_hw: tuple[int, int]
    image_size: int
    resized_hw: tuple[int, int]
    frame_hw: tuple[int, int]
    up_rows: LinearAxis
    up_columns: LinearAxis
    frame_rows: LinearAxis
    frame_columns: LinearAxis


@functools.lru_cache(maxsize=16)
def _resizes(low_hw: tuple[int, int], image_size: int, resized_hw: tuple[int, int],
             frame_hw: tuple[int, int]) -> _Resizes:
    return _Resizes(
        low_hw, image_size, resized_hw, frame_hw,
        up_rows=LinearAxis.of(low_hw[0], image_size, resized_hw[0]),
        up_columns=LinearAxis.of(low_hw[1], image_size, resized_hw[1]),
        frame_rows=LinearAxis.of(resized_hw[0], frame_hw[0]),
        frame_columns=LinearAxis.of(resized_hw[1], frame_hw[1]),
    )


def windowed_frame_masks(low_res_logits: torch.Tensor, image_size: int, resized_hw: tuple[int, int],
                         frame_hw: tuple[int, int]) -> list[FrameMask]:
    """`full_frame_masks` computed only inside each mask's possible foreground (CPU tensors).

    low_res_logits [N, 1, h, w] are upsampled to image_size x image_size, cropped to resized_hw
    (the unpadded image), and resized to frame_hw, as in `OVSAM.postprocess_masks`."""
    logits = low_res_logits.detach()[:, 0].float().contiguous()
    frame_hw = (int(frame_hw[0]), int(frame_hw[1]))
    resizes = _resizes((int(logits.shape[1]), int(logits.shape[2])), int(image_size),
                       (int(resized_hw[0]), int(resized_hw[1])), frame_hw)
    # Boolean work goes through numpy: torch's comparisons and reductions on bool tensors are
    # several times slower on one CPU thread.
    positive = logits.numpy() > 0
    rows_with_positive = positive.any(axis=2)
    columns_with_positive = positive.any(axis=1)
    return [_window_mask(logits[i], rows_with_positive[i], columns_with_positive[i], resizes)
            for i in range(logits.shape[0])]


def _empty(frame_hw: tuple[int, int]) -> FrameMask:
    return FrameMask(np.zeros(frame_hw, dtype=bool), 0.0, None)


def _positive_span(flags: np.ndarray) -> tuple[int, int] | None:
    """First and last index of a True in a 1-D bool array, None if there is none."""
    where = np.flatnonzero(flags)
    return (int(where[0]), int(where[-1])) if where.size else None


def _nonempty(*ranges: tuple[int, int]) -> bool:
    return all(stop > start for start, stop in ranges)


def _window_mask(low: torch.Tensor, rows_with_positive: np.ndarray, columns_with_positive: np.ndarray,
                 resizes: _Resizes) -> FrameMask:
    frame_hw = resizes.frame_hw
    low_rows = _positive_span(rows_with_positive)
    low_columns = _positive_span(columns_with_positive)
    if low_rows is None or low_columns is None:
        return _empty(frame_hw)
    # SxS pixels (of the unpadded part) that read a positive low-res pixel, frame pixels that
    # read those, and the SxS pixels those frame pixels read (a pixel or so more).
    up_rows = resizes.up_rows.outputs_reading(*low_rows)
    up_columns = resizes.up_columns.outputs_reading(*low_columns)
    if not _nonempty(up_rows, up_columns):
        return _empty(frame_hw)  # foreground only in the padding
    frame_rows = resizes.frame_rows.outputs_reading(up_rows[0], up_rows[1] - 1)
    frame_columns = resizes.frame_columns.outputs_reading(up_columns[0], up_columns[1] - 1)
    if not _nonempty(frame_rows, frame_columns):
        return _empty(frame_hw)  # a small frame samples none of them
    needed_rows = resizes.frame_rows.sources_read(*frame_rows)
    needed_columns = resizes.frame_columns.sources_read(*frame_columns)
    if _window_cost(resizes, needed_rows, needed_columns, frame_columns) >= _whole_cost(resizes):
        # Foreground spread over most of the frame: the two whole resizes do less work.
        frame_rows, frame_columns = (0, frame_hw[0]), (0, frame_hw[1])
        window = _whole_frame(low, resizes)
    else:
        found = _frame_window(low, resizes, needed_rows, needed_columns)
        if found is None:
            return _empty(frame_hw)
        frame_rows, frame_columns, window = found
    # Windows are bounded by logits > 0, a superset of the foreground (FOREGROUND_LOGIT > 0).
    inside = window.numpy() > FOREGROUND_LOGIT
    area = int(np.count_nonzero(inside))
    if area == 0:
        return _empty(frame_hw)
    mask = np.zeros(frame_hw, dtype=bool)
    mask[frame_rows[0]:frame_rows[1], frame_columns[0]:frame_columns[1]] = inside
    x0, y0, x1, y1 = tight_box(inside)
    box = (x0 + frame_columns[0], y0 + frame_rows[0], x1 + frame_columns[0], y1 + frame_rows[0])
    return FrameMask(mask, _mean_foreground_probability(window, area), box)


def _window_cost(resizes: _Resizes, needed_rows: tuple[int, int], needed_columns: tuple[int, int],
                 frame_columns: tuple[int, int]) -> int:
    """Values F.interpolate writes for one windowed mask: each axis pass writes the whole length
    of its axis across the window of the other. An upper bound: the SxS foreground usually
    narrows the frame window further."""
    low_rows = resizes.up_rows.sources_read(*needed_rows)
    size, (frame_height, frame_width) = resizes.image_size, resizes.frame_hw
    return ((low_rows[1] - low_rows[0]) * size + size * (needed_columns[1] - needed_columns[0])
            + (needed_rows[1] - needed_rows[0]) * frame_width + frame_height * (frame_columns[1] - frame_columns[0]))


def _whole_cost(resizes: _Resizes) -> int:
    """Values the two whole resizes of `OVSAM.postprocess_masks` write for one mask (a little
    more than `_whole_frame` writes: it stops the first after the unpadded part)."""
    return resizes.image_size ** 2 + resizes.frame_hw[0] * resizes.frame_hw[1]


def _whole_frame(low: torch.Tensor, resizes: _Resizes) -> torch.Tensor:
    """One mask's frame logits exactly as `OVSAM.postprocess_masks` computes them."""
    (low_height, low_width), size, (height, width) = resizes.low_hw, resizes.image_size, resizes.resized_hw
    # Only the unpadded height x width corner of the SxS upsampling is used: stop at its exact prefix.
    source_rows, output_rows = exact_prefix(low_height, size, height)
    source_columns, output_columns = exact_prefix(low_width, size, width)
    upscaled = F.interpolate(low[None, None, :source_rows, :source_columns], (output_rows, output_columns),
                             mode="bilinear", align_corners=False)
    upscaled = upscaled[..., :height, :width]
    return F.interpolate(upscaled, resizes.frame_hw, mode="bilinear", align_corners=False)[0, 0]


def _frame_window(low: torch.Tensor, resizes: _Resizes, needed_rows: tuple[int, int],
                  needed_columns: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int], torch.Tensor] | None:
    """(rows, columns, logits) of the part of the frame that can be foreground, computed from the
    SxS pixels [needed_rows) x [needed_columns) (all that the frame's candidate window reads);
    None if none of it is foreground."""
    upscaled = _upscale_window(low, resizes, needed_rows, needed_columns)
    # The SxS foreground is usually smaller than the low-res bound: narrow the frame window to it.
    up_positive = upscaled.numpy() > 0
    positive_rows = _positive_span(up_positive.any(axis=1))
    positive_columns = _positive_span(up_positive.any(axis=0))
    if positive_rows is None or positive_columns is None:
        return None
    frame_rows = resizes.frame_rows.outputs_reading(needed_rows[0] + positive_rows[0],
                                                    needed_rows[0] + positive_rows[1])
    frame_columns = resizes.frame_columns.outputs_reading(needed_columns[0] + positive_columns[0],
                                                          needed_columns[0] + positive_columns[1])
    if not _nonempty(frame_rows, frame_columns):
        return None
    (height, width), (frame_height, frame_width) = resizes.resized_hw, resizes.frame_hw
    across = resize_axis_window(upscaled, 1, width, needed_columns[0], frame_width, frame_columns)
    return frame_rows, frame_columns, resize_axis_window(across, 0, height, needed_rows[0], frame_height, frame_rows)


def _upscale_window(low: torch.Tensor, resizes: _Resizes, rows: tuple[int, int],
                    columns: tuple[int, int]) -> torch.Tensor:
    """Rows [rows) x columns [columns) of the low-res -> SxS upsampling of one mask."""
    low_rows = resizes.up_rows.sources_read(*rows)
    low_columns = resizes.up_columns.sources_read(*columns)
    block = low[low_rows[0]:low_rows[1], low_columns[0]:low_columns[1]]
    across = resize_axis_window(block, 1, resizes.low_hw[1], low_columns[0], resizes.image_size, columns)
    return resize_axis_window(across, 0, resizes.low_hw[0], low_rows[0], resizes.image_size, rows)


def _mean_foreground_probability(logits: torch.Tensor, area: int) -> float:
    """mask_scores for one mask with `area` > 0 foreground pixels, without a boolean gather.

    sigmoid(max(x, 0)) - 1/2 is sigmoid(x) - 1/2 on foreground and exactly 0 elsewhere (x <= 0,
    and 0 < x <= FOREGROUND_LOGIT, where float32's sigmoid is exactly 1/2), so one float32 sum of
    non-negative terms gives the foreground's total, with no cancellation."""
    excess = torch.sigmoid(logits.clamp(min=0.0)).sub_(0.5).sum()
    return (float(excess) + 0.5 * area) / area
