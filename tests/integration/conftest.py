"""Broker selection and Kafka fixtures for the integration tests.

A broker is always provided, never skipped, chosen in this order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` from the environment (must answer a metadata request);
2. a testcontainers Kafka container, when a Docker engine answers and the container starts;
3. the project's own Apache Kafka broker (``consumer.dev.local_broker``: Java 17+ and Maven).

If none of them can be had the session fails with instructions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from consumer.dev.local_broker import LocalBroker, LocalBrokerError
from tests.integration.installed_wheel import InstalledWheel, build_wheel, install_wheel

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent

# A configured broker is expected to be up already; this only absorbs a slow first connect.
EXTERNAL_BROKER_TIMEOUT_SECONDS = 15.0

# Answering a ping takes milliseconds; a longer wait only delays the fallback when the
# Docker socket exists but the daemon is wedged.
DOCKER_PING_TIMEOUT_SECONDS = 3

# testcontainers' own default image, named here so the report can say what ran.
CONTAINER_IMAGE = "confluentinc/cp-kafka:7.6.0"

# Topic creation returns before every partition has a leader; producing earlier fails with
# retriable leader-not-available errors that make tests slow and flaky.
TOPIC_READY_TIMEOUT_SECONDS = 30.0

HOW_TO_GET_A_BROKER = (
    "The integration tests need a Kafka broker and none could be started. Any one of these "
    "provides one:\n"
    "  * install Java 17+ and Maven (mvn on PATH): the tests then start the project's own "
    "Apache Kafka broker (prefetch with `python -m consumer.dev.local_broker fetch`);\n"
    "  * set KAFKA_BOOTSTRAP_SERVERS=host:port to a running broker;\n"
    "  * run a Docker engine, so testcontainers can start a Kafka container."
)

# Stash key for the one-line description of the broker in use, printed in the summary.
BROKER_DESCRIPTION = pytest.StashKey[str]()
# Stash key on a test item: whether its call phase failed (for fixtures that keep
# evidence only then).
CALL_FAILED = pytest.StashKey[bool]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    description = config.stash.get(BROKER_DESCRIPTION, None)
    if description:
        terminalreporter.write_sep("-", "kafka broker")
        terminalreporter.write_line(description)


@pytest.fixture(scope="session")
def kafka_bootstrap_servers(request: pytest.FixtureRequest) -> Iterator[str]:
    config = request.config
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        try:
            _wait_for_metadata(configured, EXTERNAL_BROKER_TIMEOUT_SECONDS)
        except KafkaException as exc:
            _fail(f"KAFKA_BOOTSTRAP_SERVERS={configured} does not answer a metadata request: {exc}")
        _describe(config, f"external broker from KAFKA_BOOTSTRAP_SERVERS={configured}")
        yield configured
        return

    container = _start_container() if _docker_answers() else None
    if container is not None:
        bootstrap_servers = container.get_bootstrap_server()
        _describe(config, f"testcontainers Kafka ({CONTAINER_IMAGE}) at {bootstrap_servers}")
        try:
            yield bootstrap_servers
        finally:
            container.stop()
        return

    try:
        broker = LocalBroker()
        broker.start()
    except LocalBrokerError as exc:
        _fail(f"{exc}\n\n{HOW_TO_GET_A_BROKER}")
    _describe(
        config,
        f"project's local Apache Kafka {broker.kafka_version} broker (consumer.dev.local_broker) "
        f"at {broker.bootstrap_servers}, pid {broker.pid}, started in "
        f"{broker.startup_seconds:.1f}s",
    )
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def admin(kafka_bootstrap_servers: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap_servers})


@pytest.fixture
def new_topic(admin: AdminClient) -> Iterator[Callable[..., str]]:
    """Factory: ``new_topic(prefix="t", partitions=3)`` creates a uniquely named topic."""
    created: list[str] = []

    def create(prefix: str = "t", partitions: int = 3) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        future = admin.create_topics([NewTopic(name, partitions, 1)])[name]
        future.result(timeout=TOPIC_READY_TIMEOUT_SECONDS)
        created.append(name)
        _wait_for_leaders(admin, name, partitions)
        return name

    yield create

    if created:
        for future in admin.delete_topics(created, operation_timeout=10).values():
            future.result(timeout=TOPIC_READY_TIMEOUT_SECONDS)


@pytest.fixture
def group_id(request: pytest.FixtureRequest) -> str:
    """A consumer group id no other test (or earlier run on the same broker) has used."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:60]
    return f"{readable}-{uuid.uuid4().hex[:8]}"


def _fail(message: str) -> NoReturn:
    # `from None`: the message already carries the cause; pytest would otherwise print the
    # original exception a second time as "during handling of the above exception".
    raise pytest.fail.Exception(message, pytrace=False) from None


def _describe(config: pytest.Config, description: str) -> None:
    config.stash[BROKER_DESCRIPTION] = description
    log.info("kafka broker selected description=%r", description)


def _wait_for_metadata(bootstrap_servers: str, timeout: float) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    metadata = admin.list_topics(timeout=timeout)
    if not metadata.brokers:
        raise KafkaException(f"metadata from {bootstrap_servers} lists no brokers")


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=DOCKER_PING_TIMEOUT_SECONDS).ping()
    except Exception as exc:
        log.info("docker engine unavailable error=%r", exc)
        return False
    return True


def _start_container():
    """A started KafkaContainer, or None so the local broker is used instead.

    A reachable engine is not enough: the image may be unpullable (offline or a registry
    mirror policy), and then the project's own broker still works.
    """
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # releases before the community package kept it here
        from testcontainers.kafka import KafkaContainer

    container = None
    try:
        container = KafkaContainer(CONTAINER_IMAGE)
        container.start()
    except Exception as exc:
        log.warning("kafka container did not start, using the local broker error=%r", exc)
        if container is not None:
            with contextlib.suppress(Exception):
                container.stop()
        return None
    return container


def _wait_for_leaders(admin: AdminClient, topic: str, partitions: int) -> None:
    deadline = time.monotonic() + TOPIC_READY_TIMEOUT_SECONDS
    while True:
        metadata = admin.list_topics(topic=topic, timeout=5).topics.get(topic)
        if (
            metadata is not None
            and metadata.error is None
            and len(metadata.partitions) == partitions
            and all(p.leader >= 0 and p.error is None for p in metadata.partitions.values())
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} has no leader for every partition yet")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> InstalledWheel:
    """The wheel of this checkout, installed into a fresh venv outside the repository."""
    work = tmp_path_factory.mktemp("wheel")
    return install_wheel(build_wheel(work), work / "venv")
