"""scripts/check-skips: CI fails on any skip that is not a known missing-GPU one."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _junit(tmp_path: Path, skips: list[str]) -> Path:
    cases = "".join(f'<testcase classname="t" name="n{i}"><skipped message="{reason}"/></testcase>'
                    for i, reason in enumerate(skips))
    path = tmp_path / "junit.xml"
    path.write_text(f'<testsuites><testsuite name="pytest"><testcase classname="t" name="ok"/>{cases}'
                    "</testsuite></testsuites>")
    return path


def _check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "check-skips"), str(path)],
                          capture_output=True, text=True, timeout=60)


def test_the_known_gpu_skips_pass_and_are_listed(tmp_path: Path) -> None:
    result = _check(_junit(tmp_path, ["fp16 needs a CUDA GPU", "TensorRT is not installed", "TensorRT needs a GPU"]))
    assert result.returncode == 0, result.stdout
    assert "3 skipped test(s)" in result.stdout and "TensorRT is not installed" in result.stdout


def test_an_import_skip_fails(tmp_path: Path) -> None:
    result = _check(_junit(tmp_path, ["could not import 'rclpy'"]))
    assert result.returncode == 1 and "not for a missing GPU" in result.stdout


def test_more_gpu_skips_than_known_fail(tmp_path: Path) -> None:
    result = _check(_junit(tmp_path, ["TensorRT is not installed"] * 3))
    assert result.returncode == 1 and "more GPU skips than known" in result.stdout
