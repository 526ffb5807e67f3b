"""A real, local schema registry for the integration tests.

Runs Apicurio Registry (a Quarkus app) with in-memory H2 storage and exposes
its Confluent-compatible API, so confluent-kafka's ``SchemaRegistryClient``,
``AvroSerializer`` and ``AvroDeserializer`` talk to the same REST contract they
use in production.

The distribution is resolved by Maven from ``deploy/schema-registry/pom.xml``
into a cache directory outside the repository; see that directory's README.

    jars = ensure_registry_jars()
    with LocalSchemaRegistry() as registry:
        client = SchemaRegistryClient({"url": registry.url})
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

from consumer.dev.local_broker import free_ports
from tests.helpers import processes

REPO_ROOT = Path(__file__).resolve().parents[2]
POM = REPO_ROOT / "deploy" / "schema-registry" / "pom.xml"

# Base cache directory; the distribution goes into <base>/apicurio-<version>/.
CACHE_ENV = "LOYALTY_REGISTRY_CACHE"
DEFAULT_CACHE_BASE = Path.home() / ".cache" / "loyalty-consumer"

# Written last, once Maven has unpacked everything; its presence means "done".
COMPLETE_MARKER = ".complete"

CCOMPAT_PATH = "/apis/ccompat/v7"


def registry_version(pom: Path = POM) -> str:
    """The Apicurio version pinned in the pom's ``apicurio.version`` property."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find("m:properties/m:apicurio.version", ns)
    if node is None or not (node.text or "").strip():
        raise RuntimeError(f"no <apicurio.version> property in {pom}")
    return node.text.strip()


def registry_dir() -> Path:
    base = Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_BASE).expanduser()
    return base / f"apicurio-{registry_version()}"


def find_runner_jar(directory: Path) -> Path:
    """The jar to start with ``java -jar``.

    3.0.x ships a legacy layout (``*-runner.jar`` + ``lib/``); later versions
    ship Quarkus' fast-jar layout (``quarkus-run.jar``).
    """
    fast_jar = directory / "quarkus-run.jar"
    if fast_jar.is_file():
        return fast_jar
    runners = sorted(directory.glob("*-runner.jar"))
    if not runners:
        raise FileNotFoundError(f"no runnable registry jar in {directory}")
    return runners[0]


def ensure_registry_jars() -> Path:
    """Make sure the registry distribution is unpacked; return its directory.

    Maven runs only when the completion marker is missing. A file lock keeps
    parallel test workers from unpacking into the same directory at once.
    """
    target = registry_dir()
    marker = target / COMPLETE_MARKER
    if marker.is_file():
        return target

    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f"{target.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file():  # another worker finished while we waited
            return target

        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError("Maven (mvn) is needed to fetch the schema registry")
        # A half-unpacked directory from an interrupted run is not trusted.
        shutil.rmtree(target, ignore_errors=True)
        cmd = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(POM),
            "generate-resources",
            f"-Dregistry.dir={target}",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                "fetching the schema registry failed:\n"
                f"$ {' '.join(cmd)}\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
            )
        find_runner_jar(target)  # fail here, not at start-up, if the layout is wrong
        marker.write_text(registry_version() + "\n")
    return target


class LocalSchemaRegistry:
    """Apicurio Registry in a child JVM, in-memory storage, bound to 127.0.0.1.

    ``url`` is the Confluent-compatible base URL to hand to
    ``SchemaRegistryClient({"url": ...})``.
    """

    def __init__(self, port: int | None = None, heap: str = "256m") -> None:
        self.port = port or free_ports(1)[0]
        self.heap = heap
        self.url = f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"
        self.log_path: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._log = None

    def _command(self, jar: Path) -> list[str]:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else "java"
        jvm = [
            f"-Xmx{self.heap}",
            # A small heap on a shared 2-core machine: the serial collector
            # has no GC worker threads, and C1-only JIT starts faster.
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.net.preferIPv4Stack=true",
        ]
        app = {
            "quarkus.http.host": "127.0.0.1",
            "quarkus.http.port": str(self.port),
            # In-memory H2: every registry starts empty and leaves nothing behind.
            "apicurio.storage.kind": "sql",
            "apicurio.storage.sql.kind": "h2",
            "apicurio.datasource.url": f"jdbc:h2:mem:registry_{self.port}",
            # The default pool opens 20 connections up front; tests need few.
            "apicurio.datasource.jdbc.initial-size": "1",
            "apicurio.datasource.jdbc.min-size": "1",
            "apicurio.datasource.jdbc.max-size": "10",
            # One log line per HTTP request is noise in test logs.
            "quarkus.http.access-log.enabled": "false",
            # Polls the storage for log-level changes every second by default.
            "apicurio.logconfigjob.every": "1h",
            "quarkus.banner.enabled": "false",
        }
        props = [f"-D{key}={value}" for key, value in app.items()]
        return [java, *jvm, *props, "-jar", str(jar)]

    def start(self, timeout: float = 120) -> LocalSchemaRegistry:
        if self._proc is not None:
            raise RuntimeError("registry already started")
        directory = ensure_registry_jars()
        jar = find_runner_jar(directory)

        fd, name = tempfile.mkstemp(prefix=f"schema-registry-{self.port}-", suffix=".log")
        self.log_path = Path(name)
        self._log = os.fdopen(fd, "wb")
        self._proc = processes.start(
            self._command(jar),
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                self._fail(f"registry exited with code {self._proc.returncode}")
            if self._ready():
                return self
            if time.monotonic() > deadline:
                self._fail(f"registry not ready after {timeout:.0f}s")
            time.sleep(0.25)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/subjects", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def _fail(self, reason: str) -> None:
        self._terminate()
        tail = ""
        if self.log_path is not None and self.log_path.exists():
            tail = self.log_path.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"{reason}; log {self.log_path}:\n{tail}")

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            processes.stop(proc, grace=15)  # Quarkus shuts down cleanly on SIGTERM
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        """Stop the JVM and remove its log (kept only when start-up failed)."""
        self._terminate()
        if self.log_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.log_path.unlink()
            self.log_path = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> LocalSchemaRegistry:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
