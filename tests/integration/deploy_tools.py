"""The deployment tool chain, made by the project's own scripts (cached outside the
repository, so only the first run on a machine builds anything):

* deploy/kubernetes/ensure-tools.sh: helm, kubeconform, kube-apiserver, etcd, the CRDs
  and the offline JSON schemas;
* deploy/container/build-image.sh: podman/buildah and the service's image, over the base
  LOYALTY_IMAGE_BASE names (`local` unless set; `make test IMAGE_BASE=official` for the
  Dockerfile's pinned Python image). The tests assert the same things over either.

Each script prints a JSON object as its last line; a failure fails the test that needed
it, with the script's output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "deploy" / "helm" / "loyalty-consumer"
DOCKERFILE = REPO_ROOT / "deploy" / "container" / "Dockerfile"
COMPOSE_FILE = REPO_ROOT / "deploy" / "compose" / "compose.yaml"
BIN = Path(sys.executable).parent
# Cold: kube-apiserver alone builds for several minutes on two cores.
TOOLS_TIMEOUT_SECONDS = 30 * 60
# The Makefile's default (IMAGE_BASE): a base that needs no container registry.
IMAGE_BASE = os.environ.get("LOYALTY_IMAGE_BASE", "local")


@dataclass(frozen=True)
class KubernetesTools:
    helm: Path
    kubeconform: Path
    kube_apiserver: Path
    kubernetes_version: str
    etcd: Path
    keda_crds: Path
    prometheus_operator_crds: Path
    schemas: Path

    @property
    def schema_location(self) -> str:
        return str(self.schemas / "{{ .ResourceKind }}{{ .KindSuffix }}.json")


@dataclass(frozen=True)
class BuiltImage:
    image: str
    base: str  # official or local
    base_image: str
    base_digest: str
    size_bytes: int
    build_seconds: float
    # CONTAINERS_CONF / CONTAINERS_STORAGE_CONF for podman to find the image.
    env: dict[str, str]

    def podman(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["podman", *args], env={**os.environ, **self.env}, text=True, **kwargs
        )


def _script_json(script: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    result = subprocess.run(
        ["bash", str(script), *args],
        capture_output=True,
        text=True,
        timeout=TOOLS_TIMEOUT_SECONDS,
        env={**os.environ, "PYTHON": sys.executable, **(env or {})},
    )
    if result.returncode != 0:
        pytest.fail(
            f"{script.relative_to(REPO_ROOT)} failed ({result.returncode}):\n"
            f"{result.stderr[-6000:]}\n{result.stdout[-2000:]}",
            pytrace=False,
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def kubernetes_tools() -> KubernetesTools:
    paths = _script_json(REPO_ROOT / "deploy" / "kubernetes" / "ensure-tools.sh")
    return KubernetesTools(
        **{
            name: value if name == "kubernetes_version" else Path(value)
            for name, value in paths.items()
        }
    )


def build_image() -> BuiltImage:
    built = _script_json(
        REPO_ROOT / "deploy" / "container" / "build-image.sh", "--base", IMAGE_BASE
    )
    exports = subprocess.run(
        ["bash", str(REPO_ROOT / "deploy" / "container" / "build-image.sh"), "--print-env"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    env = dict(item.split("=", 1) for item in exports if "=" in item)
    return BuiltImage(**built, env=env)


def run_tool(*command: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    """A tool's run with its output kept for the assertion message."""
    result = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=300
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, command))} exited {result.returncode}:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}",
            pytrace=False,
        )
    return result
