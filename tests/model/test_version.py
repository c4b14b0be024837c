"""One version number: package.xml's, which setup.py installs and ovsam_model exposes."""
from __future__ import annotations

import re
from pathlib import Path

import ovsam_model

ROOT = Path(__file__).resolve().parents[2]


def test_the_package_exposes_package_xml_version() -> None:
    declared = re.search(r"<version>\s*([^<\s]+)\s*</version>", (ROOT / "package.xml").read_text()).group(1)
    assert ovsam_model.__version__ == declared


def test_setup_py_has_no_version_of_its_own() -> None:
    assert not re.search(r"version\s*=\s*[\"']", (ROOT / "setup.py").read_text())
