"""`launch` cannot be installed without a ROS install, so the launch file is executed against small
recording stand-ins for the launch API; the parameters file is checked against the node's table."""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import yaml

from ovsam_ros.settings import PARAMETER_NAMES, NodeSettings

ROOT = Path(__file__).resolve().parents[2]


class Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def install_launch_stand_ins(monkeypatch, share_dir: str) -> None:
    def module(name: str, **attrs) -> None:
        mod = types.ModuleType(name)
        for key, value in attrs.items():
            setattr(mod, key, value)
        monkeypatch.setitem(sys.modules, name, mod)

    class LaunchConfiguration(Recorded):
        def __eq__(self, other):
            return isinstance(other, LaunchConfiguration) and self.args == other.args

    module("launch", LaunchDescription=Recorded)
    module("launch.actions", DeclareLaunchArgument=Recorded)
    module("launch.conditions", IfCondition=Recorded, UnlessCondition=Recorded)
    module("launch.substitutions", LaunchConfiguration=LaunchConfiguration)
    module("launch_ros", )
    module("launch_ros.actions", Node=Recorded, LifecycleNode=Recorded)
    module("ament_index_python", )
    module("ament_index_python.packages", get_package_share_directory=lambda package: f"{share_dir}/{package}")


def load_launch_description(monkeypatch, file_name: str = "ovsam.launch.py"):
    install_launch_stand_ins(monkeypatch, "/opt/share")
    spec = importlib.util.spec_from_file_location("ovsam_launch", ROOT / "launch" / file_name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def test_launch_builds_the_node_with_parameters_and_remappings(monkeypatch):
    description = load_launch_description(monkeypatch)
    entities = description.args[0]
    declared = {e.args[0]: e.kwargs["default_value"] for e in entities if "default_value" in e.kwargs}
    assert declared == {"image": "image", "camera_info": "camera_info", "model": "ovsam-shapes", "weights": "",
                        "device": "auto", "lifecycle": "false", "rviz": "false"}
    nodes = [e for e in entities if e.kwargs.get("package") == "ovsam_ros"]
    assert sorted(n.kwargs["executable"] for n in nodes) == ["ovsam_lifecycle_node", "ovsam_node"]
    for node in nodes:
        params_file, overrides = node.kwargs["parameters"]
        assert params_file == "/opt/share/ovsam_ros/config/ovsam.yaml"
        assert {k: v.args[0] for k, v in overrides.items()} == {"model": "model", "weights_dir": "weights",
                                                                 "device": "device"}
        assert [(topic, target.args[0]) for topic, target in node.kwargs["remappings"]] == [
            ("image", "image"), ("camera_info", "camera_info")]
        assert node.kwargs["name"] == "ovsam_node"
    rviz = [e for e in entities if e.kwargs.get("package") == "rviz2"]
    assert rviz and rviz[0].kwargs["arguments"] == ["-d", "/opt/share/ovsam_ros/config/ovsam.rviz"]


def test_the_two_camera_launch_names_the_cameras_of_the_parameters_file(monkeypatch):
    description = load_launch_description(monkeypatch, "ovsam_cameras.launch.py")
    entities = description.args[0]
    declared = {e.args[0]: e.kwargs["default_value"] for e in entities if "default_value" in e.kwargs}
    assert declared == {"model": "ovsam-shapes", "weights": "", "device": "auto",
                        "front_image": "front/image", "front_camera_info": "front/camera_info",
                        "rear_image": "rear/image", "rear_camera_info": "rear/camera_info"}
    (node,) = [e for e in entities if e.kwargs.get("package") == "ovsam_ros"]
    assert node.kwargs["executable"] == "ovsam_node"
    params_file, _ = node.kwargs["parameters"]
    assert params_file == "/opt/share/ovsam_ros/config/ovsam.yaml"
    section = yaml.safe_load((ROOT / "config" / "ovsam.yaml").read_text())[node.kwargs["name"]]
    cameras = section["ros__parameters"]["cameras"]
    assert cameras == ["front", "rear"]
    NodeSettings(cameras=cameras).validate()
    assert [(topic, target.args[0]) for topic, target in node.kwargs["remappings"]] == [
        (f"{camera}/{topic}", f"{camera}_{topic}") for camera in cameras for topic in ("image", "camera_info")]


def test_parameters_file_matches_the_node_defaults():
    params = yaml.safe_load((ROOT / "config" / "ovsam.yaml").read_text())["ovsam_node"]["ros__parameters"]
    # `cameras` (default: empty) is the one exception: a ROS parameter file cannot state an empty list,
    # so the file shows it in a comment and in the two-camera node's section.
    assert set(params) == set(PARAMETER_NAMES) - {"cameras"}
    defaults = vars(NodeSettings())
    for name, value in params.items():
        assert value == defaults[name], f"config/ovsam.yaml '{name}' = {value!r}, node default {defaults[name]!r}"
    NodeSettings(**params).validate()


def test_invalid_settings_name_the_parameter():
    import pytest

    with pytest.raises(ValueError, match="'device'"):
        NodeSettings(device="tpu").validate()
    with pytest.raises(ValueError, match="'frame_buffer_size'"):
        NodeSettings(frame_buffer_size=0).validate()
    with pytest.raises(ValueError, match="'score_threshold'"):
        NodeSettings(score_threshold=2.0).validate()
    with pytest.raises(ValueError, match="depth_.*trim 'median' is unknown"):
        NodeSettings(depth_trim="median").validate()
    with pytest.raises(ValueError, match=r"depth range \[2.0, 1.0\] m is empty"):
        NodeSettings(depth_min_m=2.0, depth_max_m=1.0).validate()
    with pytest.raises(ValueError, match="'cameras': 'front/left' is not a camera name"):
        NodeSettings(cameras=["front/left"]).validate()
    with pytest.raises(ValueError, match="'cameras' names a camera twice"):
        NodeSettings(cameras=["front", "front"]).validate()
    NodeSettings(cameras=["front", "rear_2"]).validate()
