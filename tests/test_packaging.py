"""The distribution installs one top-level import package, `cxhealth` (issue 10).

The wheel itself is built and installed beside a team project by `.ci/wheel-check`;
these tests keep pyproject's explicit package list in step with the folders.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_in_the_wheel_and_nothing_else_at_top_level():
    """Given the folders package-dir maps, when a sub-package folder (with __init__.py) is added,
    then pyproject lists it — else the wheel would silently ship without it."""
    config = _setuptools()
    mapping: dict[str, str] = config["package-dir"]
    listed = set(config["packages"])
    assert {name.split(".")[0] for name in listed | set(mapping)} == {"cxhealth"}
    on_disk = set()
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            on_disk.add(".".join([package, *rel.parts]))
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - on_disk == set(), "listed packages without a folder"


def test_the_public_api_is_importable_without_prefect_until_a_flow_is_used():
    import subprocess
    import sys

    code = ("import sys, cxhealth; from cxhealth import diagnose, Endpoint, TLSPolicy, load_targets; "
            "light = 'prefect' not in sys.modules; from cxhealth import health_gate, integration_health, "
            "IntegrationUnhealthy, CxTarget; print(light, 'prefect' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True"]
