"""The full package build (what colcon runs: CMake with ament, not interfaces-only) installs the
messages, both Python packages, the executables, launch and config, and the installed node imports."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytestmark = [pytest.mark.ros, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_FILES = ["CMakeLists.txt", "package.xml", "msg", "srv", "ovsam_ros", "ovsam_model", "launch", "config", "scripts"]


def test_full_install_layout(tmp_path):
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    venv = Path(sys.prefix)
    source = tmp_path / "src" / "ovsam_ros"  # outside the repository, as in a colcon workspace
    source.mkdir(parents=True)
    for name in PACKAGE_FILES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                            if (ROOT / name).is_dir() else {}))
    prefix, build = tmp_path / "install", tmp_path / "build"
    env = dict(os.environ, AMENT_PREFIX_PATH=str(venv))
    steps = [
        ["cmake", "-S", str(source), "-B", str(build), "-Wno-dev", "-DBUILD_TESTING=OFF",
         f"-DCMAKE_INSTALL_PREFIX={prefix}", f"-DCMAKE_PREFIX_PATH={venv}", f"-DPython3_EXECUTABLE={sys.executable}"],
        ["cmake", "--build", str(build), "-j", "2"],
        ["cmake", "--install", str(build)],
    ]
    for step in steps:
        result = subprocess.run(step, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    for path in ["lib/ovsam_ros/ovsam_node", "lib/ovsam_ros/ovsam_lifecycle_node", "share/ovsam_ros/launch/ovsam.launch.py",
                 "share/ovsam_ros/config/ovsam.yaml", "share/ovsam_ros/config/ovsam.rviz", "share/ovsam_ros/package.xml"]:
        assert (prefix / path).exists(), path
    assert os.access(prefix / "lib/ovsam_ros/ovsam_node", os.X_OK)
    for path in ["ovsam_ros/msg/__init__.py", "ovsam_ros/srv/__init__.py", "ovsam_ros/node.py",
                 "ovsam_model/model_configs/ovsam-shapes.json", "ovsam_model/class_names/lvis.txt"]:
        assert (site / path).exists(), path
    check = ("import ovsam_ros.node, ovsam_ros.lifecycle_node, ovsam_model;"
             "from ovsam_ros.msg import Prompt, PromptArray, InstanceMask, InstanceMaskArray;"
             "from ovsam_ros.srv import Segment, SetVocabulary;"
             "assert ovsam_ros.node.__file__.startswith(%r), ovsam_ros.node.__file__" % str(site))
    run_env = dict(os.environ, PYTHONPATH=str(site),
                   LD_LIBRARY_PATH=os.pathsep.join(filter(None, [str(prefix / "lib"), os.environ.get("LD_LIBRARY_PATH")])))
    result = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=run_env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
