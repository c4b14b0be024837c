"""`python -m ovsam_ros.tools.track_quality`: tracks through the engine on the shipped model, scored
against the moving world's truth."""
from __future__ import annotations

import argparse

import pytest

from ovsam_model.predictor import OVSAMPredictor
from ovsam_model.synthetic.motion import MovingWorld
from ovsam_ros.tools.track_quality import main, parse_range, run_track


def test_a_track_on_a_lone_object_is_scored_on_every_stepped_frame() -> None:
    # World 2's largest object is alone in frames 0-8: measured IoU 0.90-0.92 on frames 2-8.
    world = MovingWorld(seed=2, size=640, height=480, num_objects=4, speed=1.0)
    run = run_track(OVSAMPredictor.from_pretrained("ovsam-shapes"), world, seed=2, start=0, length=4, stride=2)
    assert len(run.ious) == 4 and not run.lost and run.frames_on_another_object == 0
    assert min(run.ious) > 0.8, run.ious


def test_the_command_prints_the_summary_over_its_tracks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seeds", "2", "--starts", "0:40:20", "--length", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "world 2: mean IoU" in out and "2 tracks of 2 frames" in out and "lost 0" in out


def test_start_frames_are_a_range_and_bad_ones_are_a_usage_error() -> None:
    assert parse_range("0:240:20") == range(0, 240, 20) and parse_range("5:8") == range(5, 8)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_range("12")
    assert main(["--length", "0"]) == 2
