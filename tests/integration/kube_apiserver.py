"""A real Kubernetes API server on loopback: Debian's etcd and a kube-apiserver built by
deploy/kubernetes/ensure-tools.sh. No kubelet, scheduler or controllers: objects are
stored and validated exactly as a cluster would store and validate them, and nothing
runs.

Run by hand: python -m tests.integration.kube_apiserver  (prints a kubeconfig path; Ctrl-C
stops it).
"""

from __future__ import annotations

import json
import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consumer.dev.local_broker import free_ports
from tests.helpers import processes

READY_TIMEOUT_SECONDS = 60.0
# Only addresses the API server allocates to Services; nothing is ever sent there.
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/24"


class ApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:2000]}")
        self.status = status
        self.body = body


@dataclass
class KubeApiServer:
    kube_apiserver: Path
    etcd: Path
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kube-api-")))
    port: int = 0
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    _processes: list[subprocess.Popen] = field(default_factory=list)
    _context: ssl.SSLContext | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    def start(self) -> None:
        etcd_client, etcd_peer, self.port = free_ports(3)
        certs = self.workdir / "certs"
        certs.mkdir()
        key = self.workdir / "service-account.key"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True
        )
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.token},admin,admin,"system:masters"\n')
        self._spawn(
            "etcd",
            [
                str(self.etcd),
                "--data-dir",
                str(self.workdir / "etcd"),
                "--listen-client-urls",
                f"http://127.0.0.1:{etcd_client}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{etcd_client}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{etcd_peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{etcd_peer}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{etcd_peer}",
            ],
        )
        self._spawn(
            "kube-apiserver",
            [
                str(self.kube_apiserver),
                f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--cert-dir={certs}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={key}",
                f"--service-account-signing-key-file={key}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--enable-priority-and-fairness=false",
            ],
        )
        self._wait_ready()
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "local",
                            "cluster": {
                                "server": self.url,
                                "certificate-authority": str(certs / "apiserver.crt"),
                            },
                        }
                    ],
                    "users": [{"name": "admin", "user": {"token": self.token}}],
                    "contexts": [
                        {"name": "local", "context": {"cluster": "local", "user": "admin"}}
                    ],
                    "current-context": "local",
                }
            )
        )
        self.kubeconfig.chmod(0o600)

    def _spawn(self, name: str, command: list[str]) -> None:
        # The child keeps its own copy of the file descriptor.
        with (self.workdir / f"{name}.log").open("wb") as log:
            self._processes.append(
                processes.start(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
            )

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        last: Exception | None = None
        while time.monotonic() < deadline:
            for process in self._processes:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{process.args[0]} exited {process.returncode}:\n"
                        f"{self.log_tail('etcd')}\n{self.log_tail('kube-apiserver')}"
                    )
            try:
                if self.request("GET", "/readyz") == "ok":
                    return
            except (OSError, ApiError, ssl.SSLError) as exc:
                last = exc
            time.sleep(0.5)
        raise RuntimeError(
            f"kube-apiserver not ready in {READY_TIMEOUT_SECONDS}s ({last!r}):\n"
            f"{self.log_tail('kube-apiserver')}"
        )

    def request(self, method: str, path: str, body: Any = None, content_type: str = "") -> Any:
        if self._context is None:
            crt = self.workdir / "certs" / "apiserver.crt"
            if not crt.exists():
                raise OSError("no serving certificate yet")
            self._context = ssl.create_default_context(cafile=str(crt))
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", content_type or "application/json")
        try:
            with urllib.request.urlopen(request, context=self._context, timeout=30) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, exc.read().decode(errors="replace")) from None
        try:
            return json.loads(text)
        except ValueError:
            return text

    def stop(self) -> None:
        # The API server first, then its etcd, each given 15 s to stop cleanly.
        for process in reversed(self._processes):
            processes.stop(process, grace=15)
        self._processes.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)


if __name__ == "__main__":
    from tests.integration.deploy_tools import kubernetes_tools

    tools = kubernetes_tools()
    server = KubeApiServer(tools.kube_apiserver, tools.etcd)
    server.start()
    print(f"kube-apiserver at {server.url}; export KUBECONFIG={server.kubeconfig}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
