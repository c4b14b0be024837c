"""pip installs the model library alone: `pip install .` gives `ovsam_model` and `ovsam-model`,
without ROS. The ROS package (node, messages) is built by colcon from CMakeLists.txt."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def package_version() -> str:
    """The one version number of the project: package.xml's, which ROS tools read too."""
    match = re.search(r"<version>\s*([^<\s]+)\s*</version>", (HERE / "package.xml").read_text())
    if match is None:
        raise RuntimeError("package.xml has no <version>")
    return match.group(1)


def requirements(name: str) -> list[str]:
    lines = (HERE / "requirements" / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="ovsam_model",
    version=package_version(),
    description="Open-Vocabulary SAM (ECCV 2024) as a plain PyTorch library, with a fast predictor.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["ovsam_model", "ovsam_model.*"]),
    package_data={"ovsam_model": ["model_configs/*.json", "class_names/*.txt", "weights/*/*"]},
    install_requires=requirements("model.txt"),
    extras_require={"test": requirements("test.txt")},
    entry_points={"console_scripts": ["ovsam-model=ovsam_model.cli:main"]},
)
