"""A real Prometheus server for the scrape test: Debian's package, installed by
deploy/prometheus/ensure-prometheus.sh (which `make test` runs)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from consumer.dev.local_broker import free_ports
from tests.helpers import processes

# Readiness of a fresh Prometheus with an empty TSDB takes about a second.
START_TIMEOUT_SECONDS = 60.0


class PrometheusServer:
    def __init__(self, scrape_target: str, scrape_interval: str = "1s") -> None:
        self.scrape_target = scrape_target
        self.scrape_interval = scrape_interval
        self._process: subprocess.Popen | None = None
        self._workdir = Path(tempfile.mkdtemp(prefix="loyalty-prometheus-"))
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError(
                "prometheus is not installed: run deploy/prometheus/ensure-prometheus.sh "
                "(make test does)"
            )
        config = self._workdir / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {self.scrape_interval}\n"
            "scrape_configs:\n"
            "  - job_name: loyalty-consumer\n"
            "    static_configs:\n"
            f"      - targets: ['{self.scrape_target}']\n"
        )
        log = open(self._workdir / "prometheus.log", "wb")  # noqa: SIM115 - kept for the process
        self._process = processes.start(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self._workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._ready():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self._workdir / "prometheus.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"prometheus did not become ready:\n{tail}")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        if self._process is not None:
            processes.stop(self._process, grace=15)
        shutil.rmtree(self._workdir, ignore_errors=True)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query through the HTTP API; the result vector."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = orjson.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
