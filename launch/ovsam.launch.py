"""ros2 launch ovsam_ros ovsam.launch.py image:=/camera/color/image_raw camera_info:=/camera/color/camera_info
   [model:=ovsam-shapes] [weights:=DIR] [device:=auto] [lifecycle:=false] [rviz:=false]"""
import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

from launch import LaunchDescription

PACKAGE = "ovsam_ros"


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    params_file = os.path.join(share, "config", "ovsam.yaml")
    rviz_config = os.path.join(share, "config", "ovsam.rviz")

    arguments = [
        DeclareLaunchArgument("image", default_value="image", description="colour image topic"),
        DeclareLaunchArgument("camera_info", default_value="camera_info", description="CameraInfo topic"),
        DeclareLaunchArgument("model", default_value="ovsam-shapes", description="model configuration"),
        DeclareLaunchArgument("weights", default_value="", description="weights directory (empty = shipped)"),
        DeclareLaunchArgument("device", default_value="auto", description="auto | cpu | cuda"),
        DeclareLaunchArgument("lifecycle", default_value="false", description="start the managed node"),
        DeclareLaunchArgument("rviz", default_value="false", description="also start RViz2"),
    ]
    overrides = {
        "model": LaunchConfiguration("model"),
        "weights_dir": LaunchConfiguration("weights"),
        "device": LaunchConfiguration("device"),
    }
    remappings = [
        ("image", LaunchConfiguration("image")),
        ("camera_info", LaunchConfiguration("camera_info")),
    ]
    common = dict(package=PACKAGE, name="ovsam_node", output="screen",
                  parameters=[params_file, overrides], remappings=remappings)
    plain = Node(executable="ovsam_node", condition=UnlessCondition(LaunchConfiguration("lifecycle")), **common)
    managed = LifecycleNode(executable="ovsam_lifecycle_node", namespace="",
                            condition=IfCondition(LaunchConfiguration("lifecycle")), **common)
    rviz = Node(package="rviz2", executable="rviz2", arguments=["-d", rviz_config],
                condition=IfCondition(LaunchConfiguration("rviz")), output="screen")
    return LaunchDescription(arguments + [plain, managed, rviz])
