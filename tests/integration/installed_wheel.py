"""The product as its users get it: the wheel, built from this checkout and installed
into a virtual environment of its own, outside the repository.

Built once per test session (`installed_wheel` fixture in conftest.py); the container
image and any test that must run what users run take the wheel from here.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class InstalledWheel:
    wheel: Path
    venv: Path

    @property
    def command(self) -> Path:
        return self.venv / "bin" / "loyalty-consumer"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def build_wheel(destination: Path) -> Path:
    """`pip wheel` of the checkout, without its dependencies (those come from the index)."""
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
    subprocess.run(
        [*pip_wheel, "-w", str(destination), str(REPO_ROOT)], check=True, cwd=destination
    )
    (wheel,) = destination.glob("loyalty_consumer-*.whl")
    return wheel


def install_wheel(wheel: Path, target: Path) -> InstalledWheel:
    venv.create(target, with_pip=True, clear=True)
    pip_install = [str(target / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip_install, str(wheel)], check=True, cwd=target)
    return InstalledWheel(wheel, target)
