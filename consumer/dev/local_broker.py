"""A single-node Apache Kafka broker (KRaft, combined broker+controller) run from Maven jars.

The integration tests need a real broker, and a Docker engine is not always there. Java and
Maven are enough: ``ensure_jars`` resolves the broker's classpath from
``consumer/dev/kafka/pom.xml`` (package data) once into a cache outside the repository,
and ``LocalBroker`` formats a throwaway log directory and runs ``kafka.Kafka`` on free
loopback ports.

    python -m consumer.dev.local_broker fetch            # resolve the jars only
    python -m consumer.dev.local_broker run --port 9092  # run until Ctrl-C / SIGTERM
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import ctypes
import ctypes.util
import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import IO

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from consumer.dev.ports import free_ports, why_port_is_taken
from consumer.errors import OperatorCommandError

log = logging.getLogger(__name__)

# Package data, so `loyalty-consumer local` works from an installed wheel too. Maven and
# the JVM need real paths; a wheel installed into site-packages has them.
KAFKA_LOCAL_DIR = Path(str(resources.files("consumer.dev") / "kafka"))
POM_PATH = KAFKA_LOCAL_DIR / "pom.xml"
LOG4J_CONFIG_PATH = KAFKA_LOCAL_DIR / "log4j2.yaml"

# Cache root for resolved jars; kept out of the repository so `git clean` and fresh clones
# do not pay the download again. Overridable for CI caches and read-only home directories.
CACHE_ENV_VAR = "LOYALTY_KAFKA_CACHE"
DEFAULT_CACHE_ROOT = Path("~/.cache/loyalty-consumer")

# Written last into the libs directory; holds a hash of the pom so editing the pom (say, a
# log4j bump under the same Kafka version) refetches instead of reusing a stale classpath.
COMPLETE_MARKER = ".complete"

# Kafka 4.x brokers require Java 17; older JVMs fail with an opaque class-version error.
MIN_JAVA_MAJOR = 17

# How long a clean shutdown may take before SIGKILL. A single node with tiny logs closes in
# well under a second; the margin covers a loaded CI machine flushing segments.
STOP_GRACE_SECONDS = 20.0

# Per-attempt wait of the readiness probe: short, so a broker that dies early is noticed
# quickly, but long enough for a metadata round trip on a busy 2-core machine.
PROBE_TIMEOUT_SECONDS = 2.0

# Temp workdirs carry the owning Python pid so a later start can delete the ones whose owner
# was killed too hard to clean up (see _remove_orphaned_workdirs).
TEMP_PREFIX = "loyalty-kafka-"
OWNER_FILE = "owner.pid"

# Group (and topic) name used only to ask the group coordinator a question at startup; an
# offset fetch creates no group, so nothing is left behind on the broker.
WARMUP_GROUP = "local-broker-warmup"

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

# Lines of broker log shown in the exception when start() fails.
LOG_TAIL_LINES = 40

# JVM flags for a short-lived test broker on a small machine. G1 with a low pause target is
# what Kafka's own start scripts use. C1-only compilation (TieredStopAtLevel=1) cut startup
# from ~2.6 s to ~2.0 s and RSS by ~30 MB here; a test broker never runs long enough to
# profit from C2. Log4j's shutdown hook is off because the broker closes its loggers itself
# and the hook only prints a spurious warning when it loses that race.
JVM_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
    "-Dlog4j2.shutdownHookEnabled=false",
)

# Broker settings beyond listeners and paths. Replication factors and ISR sizes must be 1
# on a single node or the internal topics can never be created; the rest keeps tests fast
# and explicit: no rebalance delay, and topics exist only when a test creates them.
BROKER_SETTINGS = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "num.partitions": "3",
    "auto.create.topics.enable": "false",
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.replication.factor": "1",
    # The default of 50 partitions makes the first group coordinator lookup wait for 50
    # partition leaders; one is plenty for a test broker.
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
}


# The secured listener's name, mechanism and the authorizer Kafka ships for KRaft.
SECURED_LISTENER = "SASL_SSL"
SCRAM_MECHANISM = "SCRAM-SHA-512"
STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
# Clients of the PLAINTEXT and CONTROLLER listeners are unauthenticated and so
# User:ANONYMOUS; making that principal a super user keeps the broker's own controller
# traffic and the tests' setup (topics, ACLs) working while ACLs bind everyone on the
# secured listener.
PLAINTEXT_SUPER_USER = "User:ANONYMOUS"
# kafka-storage's --add-scram parser splits on ',', '=' and ']' and knows no escaping.
_SCRAM_SAFE = re.compile(r"[A-Za-z0-9._-]+")


class LocalBrokerError(OperatorCommandError, RuntimeError):
    """The local broker could not be provisioned or did not come up."""


@dataclass(frozen=True)
class SecuredListener:
    """A second listener speaking SASL_SSL with SCRAM-SHA-512, next to PLAINTEXT, and
    Kafka's StandardAuthorizer for the whole broker: on the secured listener only what
    an ACL allows is allowed; the PLAINTEXT listener stays an unauthenticated super user
    for setting things up.

    keystore_pem: the broker's PKCS#8 private key (unencrypted) followed by its
    certificate chain, PEM; the certificate must name 127.0.0.1 for clients that verify
    the host name. users: SCRAM-SHA-512 credentials, written into the metadata log when
    the storage is formatted, so they exist before the broker first starts.
    """

    keystore_pem: Path
    users: Mapping[str, str] = field(repr=False)
    port: int | None = None

    def __post_init__(self) -> None:
        for name, password in self.users.items():
            if not (_SCRAM_SAFE.fullmatch(name) and _SCRAM_SAFE.fullmatch(password)):
                raise ValueError(
                    f"SCRAM user {name!r}: names and passwords may use only "
                    "letters, digits, '.', '_' and '-'"
                )

    def server_properties(self, port: int) -> dict[str, str]:
        prefix = f"listener.name.{SECURED_LISTENER.lower()}"
        return {
            "sasl.enabled.mechanisms": SCRAM_MECHANISM,
            f"{prefix}.sasl.enabled.mechanisms": SCRAM_MECHANISM,
            f"{prefix}.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            f"{prefix}.ssl.keystore.type": "PEM",
            f"{prefix}.ssl.keystore.location": str(self.keystore_pem),
            "authorizer.class.name": STANDARD_AUTHORIZER,
            "super.users": PLAINTEXT_SUPER_USER,
        }

    def format_arguments(self) -> list[str]:
        arguments = []
        for name, password in self.users.items():
            arguments += ["--add-scram", f"{SCRAM_MECHANISM}=[name={name},password={password}]"]
        return arguments


def kafka_version() -> str:
    """The Kafka version pinned in the pom (the single place it is written down)."""
    ns = "{http://maven.apache.org/POM/4.0.0}"
    version = ET.parse(_require_pom()).getroot().findtext(f"{ns}properties/{ns}kafka.version")
    if not version:
        raise LocalBrokerError(f"no <kafka.version> property in {POM_PATH}")
    return version.strip()


def cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV_VAR)
    base = Path(root) if root else DEFAULT_CACHE_ROOT
    return base.expanduser() / f"kafka-{kafka_version()}"


def ensure_jars() -> Path:
    """Return a directory holding the broker's runtime jars, resolving them on first use."""
    pom = _require_pom()
    libs = cache_dir() / "libs"
    marker = libs / COMPLETE_MARKER
    pom_hash = hashlib.sha256(pom.read_bytes()).hexdigest()

    libs.parent.mkdir(parents=True, exist_ok=True)
    # Parallel test runs (or two terminals) share the cache: only one may run Maven, and
    # the others must wait for it rather than read a half-copied directory.
    with _file_lock(libs.parent / ".lock"):
        if marker.is_file() and marker.read_text().strip() == pom_hash:
            log.debug("kafka jars cached path=%s", libs)
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise LocalBrokerError(
                "Maven (mvn) is not on PATH; it is needed once to download the Kafka broker "
                "jars: install Maven (and Java 17+), then run again"
            )
        shutil.rmtree(libs, ignore_errors=True)
        log.info("fetching kafka jars version=%s path=%s", kafka_version(), libs)
        started = time.monotonic()
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={libs}",
                "-DincludeScope=runtime",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            raise LocalBrokerError(
                f"mvn dependency:copy-dependencies failed (exit {result.returncode}):\n"
                + _last_lines(output, LOG_TAIL_LINES)
            )
        marker.write_text(pom_hash + "\n")
        log.info(
            "fetched kafka jars count=%d seconds=%.1f",
            len(list(libs.glob("*.jar"))),
            time.monotonic() - started,
        )
        return libs


class LocalBroker:
    """A single-node KRaft broker in a child JVM; use as a context manager or start()/stop()."""

    def __init__(
        self,
        port: int | None = None,
        workdir: Path | None = None,
        heap: str = "512m",
        *,
        inherit_console: bool = False,
        security: SecuredListener | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        if not re.fullmatch(r"\d+[kKmMgG]?", heap):
            raise ValueError(f"heap must look like 512m or 1g, got {heap!r}")
        self.port = port
        self.controller_port: int | None = None
        self.security = security
        self.secured_port: int | None = security.port if security else None
        self.heap = heap
        # Broker properties on top of BROKER_SETTINGS, e.g. a scenario's group timeouts.
        self.settings = dict(settings or {})
        self.kafka_version = kafka_version()
        self.startup_seconds: float | None = None
        # With the console inherited (the `run` command), WARN lines show in the terminal;
        # otherwise they go to a file so they cannot interleave with pytest's output.
        self._inherit_console = inherit_console
        self._requested_workdir = workdir
        self._workdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        if self.port is None:
            raise LocalBrokerError("the broker port is chosen by start(); call it first")
        return f"127.0.0.1:{self.port}"

    @property
    def secured_bootstrap_servers(self) -> str:
        if self.secured_port is None:
            raise LocalBrokerError("no secured listener, or start() has not chosen its port")
        return f"127.0.0.1:{self.secured_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def log_dir(self) -> Path | None:
        return self._workdir / "logs" if self._workdir else None

    @property
    def data_dir(self) -> Path | None:
        """The broker's `log.dirs`: one directory of segment files per partition."""
        return self._workdir / "data" if self._workdir else None

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 90) -> None:
        """Start the JVM and return once the broker answers a metadata request.

        ``timeout`` covers formatting and JVM startup, not a first-time jar download.
        """
        if self._proc is not None:
            raise LocalBrokerError("broker already started")
        libs = ensure_jars()
        java = _find_java()
        # A restart (start after stop(keep_data=True) or kill()) keeps the ports and the
        # data: clients reconnect to the same address and find the same log.
        if self.port is not None:
            _refuse_taken_port(self.port)
        if self.port is None:
            self.port, self.controller_port = free_ports(2)
        elif self.controller_port is None:
            (self.controller_port,) = free_ports(1)
        if self.security is not None and self.secured_port is None:
            (self.secured_port,) = free_ports(1, avoid=(self.port, self.controller_port))

        if self._workdir is not None:
            pass
        elif self._requested_workdir is not None:
            self._workdir = self._requested_workdir.resolve()
            self._workdir.mkdir(parents=True, exist_ok=True)
        else:
            _remove_orphaned_workdirs()
            self._workdir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
            (self._workdir / OWNER_FILE).write_text(f"{os.getpid()}\n")
        data_dir = self._workdir / "data"
        log_dir = self._workdir / "logs"
        log_dir.mkdir(exist_ok=True)
        props = self._workdir / "server.properties"
        props.write_text(self._server_properties(data_dir))

        classpath = f"{libs}/*"
        log_flags = [
            f"-Dkafka.logs.dir={log_dir}",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG_PATH}",
        ]
        started = time.monotonic()
        try:
            # A caller-supplied workdir may hold data from an earlier run: keep it, since
            # formatting again fails on the cluster id stored there.
            if not (data_dir / "meta.properties").is_file():
                self._format_storage(java, classpath, log_flags, props, timeout)
            command = [
                java,
                f"-Xms{self.heap}",
                f"-Xmx{self.heap}",
                *JVM_FLAGS,
                *log_flags,
                "-cp",
                classpath,
                "kafka.Kafka",
                str(props),
            ]
            log.debug("starting kafka broker command=%s", command)
            # The child keeps its own copy of the file descriptor, so ours can close at once.
            with self._console_sink(log_dir) as console:
                self._proc = subprocess.Popen(
                    command,
                    cwd=self._workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=console,
                    stderr=subprocess.STDOUT if console else None,
                    # Own session: a Ctrl-C in the terminal reaches Python only, so stop()
                    # decides the shutdown order instead of the JVM racing pytest's teardown.
                    start_new_session=True,
                    preexec_fn=die_with_parent_preexec(),
                )
            atexit.register(self.stop)
            self._wait_until_ready(started + timeout)
        except Exception as exc:
            tail = self._log_tail()  # read before stop() removes the temp dir
            self.stop()
            raise LocalBrokerError(
                f"kafka broker on {self.bootstrap_servers} did not start: {exc}\n{tail}"
            ) from exc
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        log.info(
            "kafka broker ready version=%s bootstrap=%s pid=%d startup_s=%.2f",
            self.kafka_version,
            self.bootstrap_servers,
            self._proc.pid,
            self.startup_seconds,
        )

    def stop(self, keep_data: bool = False) -> None:
        """Shut the broker down (SIGTERM, then SIGKILL after a grace period); idempotent.
        With `keep_data`, start() runs it again on the same log and ports."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                log.warning("kafka broker ignored SIGTERM, killing pid=%d", proc.pid)
                proc.kill()
                proc.wait()
        if proc is not None:
            log.info("kafka broker stopped pid=%d exit=%s", proc.pid, proc.returncode)
        if keep_data:
            atexit.register(self.stop)  # the data still goes when the process ends
            return
        if self._workdir is not None and self._requested_workdir is None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        self._workdir = None

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would; start() brings it back on the same log."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
            log.info("kafka broker killed pid=%d", proc.pid)

    def wait(self) -> int:
        """Block until the broker process exits on its own; returns its exit code."""
        if self._proc is None:
            raise LocalBrokerError("broker not started")
        return self._proc.wait()

    def _console_sink(self, log_dir: Path) -> contextlib.AbstractContextManager[IO[bytes] | None]:
        if self._inherit_console:
            return contextlib.nullcontext()
        return open(log_dir / "console.log", "ab")

    def _server_properties(self, data_dir: Path) -> str:
        settings = {
            **BROKER_SETTINGS,
            # Static voters need no `--standalone` at format time and keep the file
            # readable; a dynamic quorum buys nothing with a single fixed node.
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "log.dirs": str(data_dir),
        }
        if self.security is not None:
            secured = f"{SECURED_LISTENER}://127.0.0.1:{self.secured_port}"
            settings["listeners"] += f",{secured}"
            settings["advertised.listeners"] += f",{secured}"
            settings["listener.security.protocol.map"] += f",{SECURED_LISTENER}:{SECURED_LISTENER}"
            settings.update(self.security.server_properties(self.secured_port))
        settings.update(self.settings)
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _format_storage(
        self, java: str, classpath: str, log_flags: list[str], props: Path, timeout: float
    ) -> None:
        result = subprocess.run(
            [
                java,
                *log_flags,
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                _new_cluster_id(),
                "-c",
                str(props),
                *(self.security.format_arguments() if self.security else ()),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise LocalBrokerError(
                f"kafka storage format failed (exit {result.returncode}):\n"
                + (result.stdout + result.stderr).strip()
            )

    def _wait_until_ready(self, deadline: float) -> None:
        assert self._proc is not None
        # log_level 0: while the broker boots every probe is refused, and librdkafka would
        # print a connection error to stderr for each one.
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        while True:
            if self._proc.poll() is not None:
                raise LocalBrokerError(f"broker exited early with code {self._proc.returncode}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LocalBrokerError("broker did not answer a metadata request in time")
            try:
                metadata = admin.list_topics(timeout=min(PROBE_TIMEOUT_SECONDS, remaining))
            except KafkaException:
                time.sleep(0.1)
                continue
            if metadata.brokers:
                break
        self._wait_for_group_coordinator(deadline)

    def _wait_for_group_coordinator(self, deadline: float) -> None:
        # A fresh broker creates __consumer_offsets on the first group request and answers
        # NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS until it has loaded; a consumer
        # that hits that backs off ~3 s before joining again. Waiting here makes "ready"
        # include consumer groups, so the first test is not the slow one. A Consumer, not
        # AdminClient.list_consumer_group_offsets: librdkafka 2.x crashes the process when
        # the admin call meets those errors (librdkafka#5040).
        consumer = Consumer(
            {"bootstrap.servers": self.bootstrap_servers, "group.id": WARMUP_GROUP, "log_level": 0}
        )
        try:
            while True:
                try:
                    consumer.committed(
                        [TopicPartition(WARMUP_GROUP, 0)], timeout=PROBE_TIMEOUT_SECONDS
                    )
                    return
                except KafkaException:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        finally:
            consumer.close()

    def _log_tail(self) -> str:
        if self.log_dir is None:
            return "(no log directory)"
        parts = []
        for name in ("server.log", "console.log"):
            path = self.log_dir / name
            if path.is_file():
                text = path.read_text(errors="replace")
                parts.append(f"--- {path}\n{_last_lines(text, LOG_TAIL_LINES)}")
        return "\n".join(parts) or f"(no log files in {self.log_dir})"


def _require_pom() -> Path:
    if not POM_PATH.is_file():
        raise LocalBrokerError(
            f"{POM_PATH} not found: the package was installed without its data files"
        )
    return POM_PATH


def _find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    java = str(candidate) if candidate and candidate.is_file() else shutil.which("java")
    if java is None:
        raise LocalBrokerError(
            f"Java {MIN_JAVA_MAJOR}+ is needed to run the local Kafka broker: install a JDK "
            f"or JRE {MIN_JAVA_MAJOR}+ (java on PATH, or JAVA_HOME), then run again"
        )
    # `java -version` prints e.g. `openjdk version "17.0.15"` or `"1.8.0_412"` to stderr.
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if match:
        major = int(match.group(1))
        if major == 1 and match.group(2):
            major = int(match.group(2))
        if major < MIN_JAVA_MAJOR:
            raise LocalBrokerError(
                f"{java} is Java {major}; Kafka {kafka_version()} needs Java {MIN_JAVA_MAJOR}+"
            )
    return java


def _refuse_taken_port(port: int) -> None:
    """A chosen port another process listens on: said before the JVM starts. Otherwise
    the readiness probe reaches the other broker and calls this one ready, and the JVM
    dies of the bind error afterwards."""
    reason = why_port_is_taken("127.0.0.1", port)
    if reason is not None:
        raise LocalBrokerError(
            f"port {port} is taken ({reason}; another broker?): stop what "
            "listens there, or choose another port with --port"
        )


def _remove_orphaned_workdirs() -> None:
    # PR_SET_PDEATHSIG takes the JVM down with a SIGKILLed Python process, but nothing is
    # left to delete the temp dir; the next start does it instead.
    for path in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        try:
            owner = int((path / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours, or its owner has not written the file yet
        if not _pid_alive(owner):
            log.info("removing orphaned broker dir path=%s owner_pid=%d", path, owner)
            shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _new_cluster_id() -> str:
    """Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding. An id
    starting with '-' would read as an option to `kafka-storage format -t`; Kafka's own
    Uuid.randomUuid() draws again in that case, and so do we (1 draw in 64)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def die_with_parent_preexec() -> Callable[[], None] | None:
    """A preexec_fn that makes the kernel SIGKILL the child when this process dies.
    (Also used by the tests for the schema registry and Prometheus they start.)

    atexit and context managers do not run on SIGKILL, an OOM kill or a crash of the Python
    process, and an orphaned broker would keep its ports and temp dir forever. Linux's
    PR_SET_PDEATHSIG covers those cases. It fires when the *thread* that forked the child
    exits, so the broker must be started from a thread that lives as long as it should.
    Elsewhere there is no equivalent and only atexit/stop() apply.
    """
    if not sys.platform.startswith("linux"):
        return None
    # Resolved here, in the parent: the child between fork and exec must not import,
    # allocate or take locks that another parent thread may have held at fork time.
    prctl = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl
    parent_pid = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        # The parent may have died between fork() and prctl(); then no signal will come.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _last_lines(text: str, count: int) -> str:
    return "\n".join(text.splitlines()[-count:])


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m consumer.dev.local_broker",
        description="Fetch or run the project's single-node Apache Kafka broker.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="resolve the broker jars into the cache and exit")
    run = commands.add_parser("run", help="run a broker until Ctrl-C or SIGTERM")
    run.add_argument("--port", type=int, default=None, help="PLAINTEXT port (default: free)")
    run.add_argument("--workdir", type=Path, default=None, help="keep data here (default: temp)")
    run.add_argument("--heap", default="512m", help="JVM heap, e.g. 512m (default: %(default)s)")
    run.add_argument("--verbose", action="store_true", help="on a failure, the broker's log too")
    parser.epilog = "Exit status: 0 stopped, 1 failed (one line says why), 130 interrupted."
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    broker_started = False
    try:
        if args.command == "fetch":
            print(ensure_jars())
            return 0
        # SIGTERM (CI cancellation, a supervisor) must stop the JVM as cleanly as Ctrl-C.
        # SIGINT is set explicitly because a shell that starts us in the background hands
        # it over ignored, and Python then never raises KeyboardInterrupt.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _raise_keyboard_interrupt)
        with LocalBroker(args.port, args.workdir, args.heap, inherit_console=True) as broker:
            broker_started = True
            print(f"bootstrap.servers={broker.bootstrap_servers}", flush=True)
            code = broker.wait()
            log.error("kafka broker exited on its own exit=%d", code)
            return 1
    except KeyboardInterrupt:
        if broker_started:
            return 0  # the way to stop a running broker
        print("local broker: interrupted while starting", file=sys.stderr)
        return 130
    except LocalBrokerError as exc:
        lines = str(exc).splitlines() or [""]
        shown = str(exc) if getattr(args, "verbose", False) else lines[0]
        more = "" if shown == str(exc) else " (--verbose shows the broker's log)"
        print(f"local broker: {shown}{more}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
