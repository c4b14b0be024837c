"""`colcon build` of the package in a workspace (as a user does it) installs the messages, both Python
packages, the executables, launch and config; the installed node, run from the install space after
sourcing its setup script, loads the shipped model and comes up."""
from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_FILES = ["CMakeLists.txt", "package.xml", "msg", "srv", "ovsam_ros", "ovsam_model", "launch", "config",
                 "scripts"]


def colcon() -> str:
    found = shutil.which("colcon") or str(Path(sys.executable).with_name("colcon"))
    if not Path(found).exists() or shutil.which("cmake") is None:
        pytest.skip("colcon or cmake is not installed (./scripts/setup installs colcon-common-extensions)")
    return found


def workspace_with_package(tmp_path: Path) -> Path:
    source = tmp_path / "ws" / "src" / "ovsam_ros"
    source.mkdir(parents=True)
    for name in PACKAGE_FILES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    return tmp_path / "ws"


def in_sourced_workspace(workspace: Path, command: str) -> list[str]:
    # The venv's python first on PATH: on a robot that is the system python3 that has rclpy.
    return ["bash", "-c", f"source install/setup.bash && export PATH={Path(sys.executable).parent}:$PATH && {command}"]


def test_colcon_build_installs_a_node_that_runs(tmp_path):
    workspace = workspace_with_package(tmp_path)
    venv = Path(sys.prefix)
    env = dict(os.environ, AMENT_PREFIX_PATH=str(venv))
    build = subprocess.run([colcon(), "build", "--cmake-args", "-DBUILD_TESTING=OFF", f"-DCMAKE_PREFIX_PATH={venv}",
                            f"-DPython3_EXECUTABLE={sys.executable}"], cwd=workspace, env=env,
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    prefix = workspace / "install" / "ovsam_ros"
    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    for path in ["lib/ovsam_ros/ovsam_node", "lib/ovsam_ros/ovsam_lifecycle_node",
                 "share/ovsam_ros/launch/ovsam.launch.py", "share/ovsam_ros/config/ovsam.yaml",
                 "share/ovsam_ros/config/ovsam.rviz", "share/ovsam_ros/package.xml"]:
        assert (prefix / path).exists(), path
    assert os.access(prefix / "lib/ovsam_ros/ovsam_node", os.X_OK)
    for path in ["ovsam_ros/msg/__init__.py", "ovsam_ros/srv/__init__.py", "ovsam_ros/node.py",
                 "ovsam_model/model_configs/ovsam-shapes.json", "ovsam_model/class_names/lvis.txt",
                 "ovsam_model/weights/ovsam-shapes/sam2clip_vith_rn50.pth"]:
        assert (site / path).exists(), path

    # The installed executable, from the sourced install space, with the installed parameters file.
    run_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH")}
    run_env.update(ROS_DOMAIN_ID="93", ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    node = subprocess.Popen(in_sourced_workspace(
        workspace, "exec install/ovsam_ros/lib/ovsam_ros/ovsam_node --ros-args "
                   "--params-file install/ovsam_ros/share/ovsam_ros/config/ovsam.yaml"),
        cwd=workspace, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and node.poll() is None:
            ready, _, _ = select.select([node.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            line = node.stdout.readline()
            lines.append(line)
            if "ovsam_node ready" in line:
                break
        assert any("ovsam_node ready" in line for line in lines), "".join(lines)[-3000:]
        assert any("model ovsam-shapes ready" in line for line in lines), "".join(lines)[-3000:]
    finally:
        if node.poll() is None:
            node.send_signal(2)
            try:
                node.wait(timeout=15)
            except subprocess.TimeoutExpired:
                node.kill()
    where = subprocess.run(in_sourced_workspace(workspace, "python -c 'import ovsam_ros.node as n; print(n.__file__)'"),
                           cwd=workspace, env=run_env, capture_output=True, text=True)
    assert where.stdout.strip().startswith(str(site)), where.stdout + where.stderr
