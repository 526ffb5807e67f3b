"""The Python helpers of deploy/ (not a package: the build scripts run the files), loaded
by path for the tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


public_source_url = _load("source_url", DEPLOY / "container" / "source_url.py").public_source_url
