"""ovsam_ros: the ROS 2 node around ovsam_model.

In a colcon install the generated `ovsam_ros.msg` / `ovsam_ros.srv` sit in this same directory. When
run from a source checkout (scripts/setup generates them into .venv), they sit in another
`ovsam_ros` directory on sys.path: extend the package path so both halves import as one package.
"""
import pkgutil

__path__ = pkgutil.extend_path(__path__, __name__)
