"""The service's container image, built daemonless by deploy/container/build-image.sh
(buildah, chroot isolation) over the base LOYALTY_IMAGE_BASE names (`local`, made from
Debian's packages, unless `official`, the Dockerfile's pinned Python image; the same
assertions hold for both), and run with podman on the host's network against the test
broker: it accepts the sample redemptions, serves /metrics, and on SIGTERM, as PID 1,
stops cleanly with exit code 0 and its offsets committed. Its dependencies are exactly
the runtime lock's."""

from __future__ import annotations

import json
import re
import subprocess
import time
import tomllib
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from packaging.utils import canonicalize_name

from consumer.dev.local_broker import free_ports
from consumer.dev.samples import LOCAL_SECRETS, sample_webhooks
from tests.helpers.deploy_scripts import public_source_url
from tests.integration.deploy_tools import (
    BIN,
    DOCKERFILE,
    REPO_ROOT,
    BuiltImage,
    build_image,
    run_tool,
)
from tests.integration.service_harness import (
    assert_committed_to_the_end,
    committed_offsets,
    end_offsets,
)

RAW_PARTITIONS = 3
WAIT_SECONDS = 90.0
# Above the service's own shutdown deadline (25 s): podman must never need SIGKILL.
STOP_TIMEOUT_SECONDS = 40
FEED_SCRIPT = REPO_ROOT / "deploy" / "compose" / "feed_samples.py"
SECRETS_MOUNT = "/var/run/secrets/loyalty"  # deploy/helm/loyalty-consumer


@pytest.fixture(scope="module")
def image() -> BuiltImage:
    return build_image()


def test_dockerfile_is_hadolint_clean() -> None:
    run_tool(BIN / "hadolint", DOCKERFILE)


def test_image_metadata(image: BuiltImage) -> None:
    inspected = json.loads(
        image.podman("image", "inspect", image.image, capture_output=True, check=True).stdout
    )[0]
    config = inspected["Config"]
    labels = config["Labels"]
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert labels["org.opencontainers.image.version"] == project["version"]
    assert labels["org.opencontainers.image.licenses"] == project["license"]
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", labels["org.opencontainers.image.revision"])
    # The source is the remote without credentials, never the remote verbatim.
    remote = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "config", "--get", "remote.origin.url"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    source = labels["org.opencontainers.image.source"]
    assert source == public_source_url(remote) and "@" not in source.split("//")[-1]
    # The commit's time: the same label on every build of one commit.
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d([+-]\d\d:\d\d|Z)|unknown",
        labels["org.opencontainers.image.created"],
    )
    # Which base, exactly: named and by the digest it was built on; the tag says it too.
    assert labels["org.opencontainers.image.base.name"] == image.base_image.split("@")[0]
    assert labels["org.opencontainers.image.base.digest"] == image.base_digest
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", image.base_digest)
    assert image.image.endswith(
        f":{project['version']}-local" if image.base == "local" else f":{project['version']}"
    )
    assert config["Entrypoint"] == ["loyalty-consumer"]
    assert config["Cmd"] == ["run"]
    assert config.get("StopSignal") in ("SIGTERM", "15")
    user = config["User"]
    assert re.fullmatch(r"\d+(:\d+)?", user) and not user.startswith("0"), user


def test_final_stage_has_no_compiler_pip_or_cache(image: BuiltImage) -> None:
    probe = image.podman(
        "run",
        "--rm",
        "--network",
        "host",
        "--read-only",
        "--entrypoint",
        "sh",
        image.image,
        "-c",
        "for tool in gcc cc pip pip3; do command -v $tool && exit 1; done; "
        "ls -d /root/.cache/pip /tmp/* /opt/build-tools /wheels 2>/dev/null && exit 2; "
        "id -u",
        capture_output=True,
    )
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert probe.stdout.strip() == "10001"


def test_dependencies_are_exactly_the_runtime_lock(image: BuiltImage) -> None:
    """Rebuilt from the lock, the image holds the lock's versions and nothing else."""
    listed = image.podman(
        "run",
        "--rm",
        "--network",
        "host",
        "--read-only",
        "--entrypoint",
        "python3",
        image.image,
        "-c",
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))",
        capture_output=True,
        check=True,
    )
    installed = {
        canonicalize_name(name): version for name, version in json.loads(listed.stdout).items()
    }
    assert (
        installed.pop("loyalty-consumer")
        == tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    )
    lock = {
        canonicalize_name(name): (version, marker)
        for name, version, marker in re.findall(
            r"^([A-Za-z0-9._-]+)==([^\s;\\]+)(?:\s*;\s*([^\\\n]+?))?\s*\\?$",
            (REPO_ROOT / "requirements" / "runtime.lock").read_text(),
            re.MULTILINE,
        )
    }
    for name, version in installed.items():
        assert name in lock, f"{name} is in the image but not in the lock"
        assert lock[name][0] == version, (name, version, lock[name][0])
    # Every unconditional entry of the lock is there (the others depend on the platform
    # or the Python version).
    assert {name for name, (_, marker) in lock.items() if not marker} <= set(installed)


@pytest.fixture
def container_name(image: BuiltImage) -> Iterator[str]:
    name = f"loyalty-consumer-test-{uuid.uuid4().hex[:8]}"
    yield name
    image.podman("rm", "--force", "--ignore", name, capture_output=True)


def test_image_runs_the_service_and_stops_on_sigterm(
    image: BuiltImage,
    kafka_bootstrap_servers: str,
    new_topic: Callable[..., str],
    admin: AdminClient,
    group_id: str,
    container_name: str,
    tmp_path: Path,
) -> None:
    raw, clean, dead = new_topic("raw", RAW_PARTITIONS), new_topic("clean"), new_topic("dlq")
    (metrics_port,) = free_ports(1)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers,
        "LOYALTY_RAW_TOPIC": raw,
        "LOYALTY_CLEAN_TOPIC": clean,
        "LOYALTY_DLQ_TOPIC": dead,
        "LOYALTY_GROUP_ID": group_id,
        "LOYALTY_METRICS_PORT": str(metrics_port),
        "LOYALTY_RAW_TOPIC_PARTITIONS": str(RAW_PARTITIONS),
    }
    # The webhook secrets as files, mounted where and named as the Helm chart mounts them.
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(mode=0o755)
    for name, secret in LOCAL_SECRETS.items():
        (secrets_dir / f"{name}_webhook_secret").write_text(secret + "\n")
        (secrets_dir / f"{name}_webhook_secret").chmod(0o444)
        env[f"{name.upper()}_WEBHOOK_SECRET_FILE"] = f"{SECRETS_MOUNT}/{name}_webhook_secret"
    env_args = [arg for name, value in env.items() for arg in ("--env", f"{name}={value}")]
    env_args += ["--volume", f"{secrets_dir}:{SECRETS_MOUNT}:ro"]
    # As in Kubernetes: read-only root, only /tmp writable, host network, image's user.
    confined = ["--network", "host", "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp"]

    # The compose file's samples service, from the same image, feeds the raw topic.
    fed = image.podman(
        "run",
        "--rm",
        *confined,
        *env_args,
        "--volume",
        f"{FEED_SCRIPT}:/opt/compose/feed_samples.py:ro",
        "--entrypoint",
        "python3",
        image.image,
        "/opt/compose/feed_samples.py",
        capture_output=True,
    )
    assert fed.returncode == 0, fed.stdout + fed.stderr
    samples = sample_webhooks()
    accepted = sum(1 for sample in samples if sample.expected == "accepted")
    rejected = sum(1 for sample in samples if sample.expected not in ("accepted", "ignored"))
    assert fed.stdout.count("fed: ") == len(samples)

    started = image.podman(
        "run",
        "--detach",
        "--name",
        container_name,
        *confined,
        *env_args,
        image.image,
        capture_output=True,
    )
    assert started.returncode == 0, started.stderr

    assert count_records(kafka_bootstrap_servers, clean, accepted) == accepted
    # The samples signed with a wrong secret are among the rejected: the signature checks
    # ran, with the secrets read from the mounted files.
    assert count_records(kafka_bootstrap_servers, dead, rejected) == rejected
    metrics = scrape(metrics_port, "/metrics")
    assert outcome_total(metrics, "accepted") == accepted
    assert outcome_total(metrics, "rejected") == rejected

    # Exec-form entrypoint: the service is PID 1, so SIGTERM goes to it and no shell.
    init = image.podman(
        "exec", container_name, "cat", "/proc/1/cmdline", capture_output=True, check=True
    )
    assert "loyalty-consumer" in init.stdout and init.stdout.split("\0")[-2] == "run"

    image.podman("kill", "--signal", "TERM", container_name, check=True, capture_output=True)
    waited = image.podman("wait", container_name, capture_output=True, timeout=STOP_TIMEOUT_SECONDS)
    # The service logs JSON lines to stderr.
    logs = image.podman("logs", container_name, capture_output=True).stderr
    assert waited.stdout.strip() == "0", logs[-4000:]
    # The service itself handled the signal (it is PID 1 in the container) and drained.
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(
        line["message"] == "stop requested" and line.get("signal") == 15 for line in lines
    ), logs[-4000:]
    assert lines[-1]["message"] == "stopped" and lines[-1]["final_commit"] is True

    committed = committed_offsets(kafka_bootstrap_servers, group_id, raw, RAW_PARTITIONS)
    ends = end_offsets(kafka_bootstrap_servers, raw, RAW_PARTITIONS)
    assert sum(ends.values()) == len(samples)
    assert_committed_to_the_end(committed, ends)


def count_records(bootstrap_servers: str, topic: str, expected: int) -> int:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    count, deadline = 0, time.monotonic() + WAIT_SECONDS
    try:
        while count < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                count += 1
        # A little longer: more than expected would be a duplicate.
        settle = time.monotonic() + 2
        while time.monotonic() < settle:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                count += 1
    finally:
        consumer.close()
    return count


def scrape(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.read().decode()


def outcome_total(metrics: str, outcome: str) -> float:
    pattern = re.compile(r"^loyalty_records_processed_total\{([^}]*)\} (\S+)$", re.M)
    return sum(
        float(value)
        for labels, value in pattern.findall(metrics)
        if f'outcome="{outcome}"' in labels
    )
