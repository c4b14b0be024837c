"""ros2 launch ovsam_ros ovsam_cameras.launch.py front_image:=/front/color/image_raw
   front_camera_info:=/front/color/camera_info rear_image:=/rear/color/image_raw
   rear_camera_info:=/rear/color/camera_info [model:=ovsam-shapes] [weights:=DIR] [device:=auto]

One ovsam_node serving two cameras with one model in memory: config/ovsam.yaml's ovsam_cameras_node
section names them (cameras: [front, rear]); each camera's topics are under its name (front/image,
front/prompts, front/instances, ...), and this file remaps the two cameras' inputs."""
import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = "ovsam_ros"
CAMERAS = ("front", "rear")   # as in config/ovsam.yaml's ovsam_cameras_node


def generate_launch_description() -> LaunchDescription:
    params_file = os.path.join(get_package_share_directory(PACKAGE), "config", "ovsam.yaml")
    arguments = [
        DeclareLaunchArgument("model", default_value="ovsam-shapes", description="model configuration"),
        DeclareLaunchArgument("weights", default_value="", description="weights directory (empty = shipped)"),
        DeclareLaunchArgument("device", default_value="auto", description="auto | cpu | cuda"),
    ]
    remappings = []
    for camera in CAMERAS:
        for topic in ("image", "camera_info"):
            argument = f"{camera}_{topic}"
            arguments.append(DeclareLaunchArgument(argument, default_value=f"{camera}/{topic}",
                                                   description=f"the {camera} camera's {topic} topic"))
            remappings.append((f"{camera}/{topic}", LaunchConfiguration(argument)))
    overrides = {
        "model": LaunchConfiguration("model"),
        "weights_dir": LaunchConfiguration("weights"),
        "device": LaunchConfiguration("device"),
    }
    node = Node(package=PACKAGE, executable="ovsam_node", name="ovsam_cameras_node", output="screen",
                parameters=[params_file, overrides], remappings=remappings)
    return LaunchDescription(arguments + [node])
