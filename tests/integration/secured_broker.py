"""A broker of the tests' own with a SASL_SSL listener (SCRAM-SHA-512, TLS from a
throwaway CA) and ACLs, and the least-privilege ACLs of the service's principal.

The PLAINTEXT listener of the same broker is an unauthenticated super user: the tests
set up topics and ACLs, feed the raw topic and read results through it, and only the
service talks SASL_SSL."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from consumer.dev.local_broker import SCRAM_MECHANISM, LocalBroker, SecuredListener
from tests.integration.tls import CertificateAuthority, broker_keystore, new_authority

TOPIC_READY_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Principal:
    name: str
    password: str = ""

    @property
    def principal(self) -> str:
        return f"User:{self.name}"


def new_principal(name: str) -> Principal:
    return Principal(name, secrets.token_hex(16))


@dataclass
class SecuredBroker:
    broker: LocalBroker
    trusted_ca: CertificateAuthority
    untrusted_ca: CertificateAuthority
    users: dict[str, Principal]
    workdir: Path
    _admin: AdminClient | None = None

    @property
    def plaintext(self) -> str:
        return self.broker.bootstrap_servers

    @property
    def secured(self) -> str:
        return self.broker.secured_bootstrap_servers

    def admin(self) -> AdminClient:
        # Kept: a request's future fails when its client is garbage-collected.
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.plaintext})
        return self._admin

    def client_settings(
        self, user: Principal, *, password: str | None = None, ca: Path | None = None
    ) -> dict[str, str]:
        """Environment for the service: SASL_SSL with host-name verification, the
        password read from a file (the <NAME>_FILE convention)."""
        password_file = self.workdir / f"password-{secrets.token_hex(4)}"
        password_file.write_text((user.password if password is None else password) + "\n")
        password_file.chmod(0o600)
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.secured,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISMS": SCRAM_MECHANISM,
            "KAFKA_SASL_USERNAME": user.name,
            "KAFKA_SASL_PASSWORD_FILE": str(password_file),
            "KAFKA_SSL_CA_LOCATION": str(ca or self.trusted_ca.pem_path),
            "KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM": "https",
        }

    def create_topics(self, names: list[str], partitions: int = 1) -> None:
        admin = self.admin()
        futures = admin.create_topics([NewTopic(name, partitions, 1) for name in names])
        for future in futures.values():
            future.result(timeout=TOPIC_READY_TIMEOUT_SECONDS)

    def grant(self, bindings: list[AclBinding]) -> None:
        for future in self.admin().create_acls(bindings).values():
            future.result(timeout=TOPIC_READY_TIMEOUT_SECONDS)


def start_secured_broker(workdir: Path, *user_names: str) -> SecuredBroker:
    trusted = new_authority(workdir / "trusted", "test-ca")
    untrusted = new_authority(workdir / "untrusted", "unknown-ca")
    users = {name: new_principal(name) for name in user_names}
    broker = LocalBroker(
        security=SecuredListener(
            keystore_pem=broker_keystore(workdir, trusted),
            users={user.name: user.password for user in users.values()},
        )
    )
    broker.start()
    return SecuredBroker(broker, trusted, untrusted, users, workdir)


def service_acls(
    principal: Principal,
    *,
    raw_topic: str,
    clean_topic: str,
    dead_letter_topic: str,
    group_id: str,
    without: tuple[str, ...] = (),
) -> list[AclBinding]:
    """Everything the service needs and nothing more: read the raw topic, write the clean
    and dead-letter topics, use its group, and (in exactly-once mode) transactional ids
    starting with the group id. READ and WRITE imply DESCRIBE; since Kafka 3.0 WRITE on
    a topic also allows an idempotent producer. `without` drops bindings by name
    ('dead_letter_write', ...) to test a missing one."""
    named = {
        "raw_read": (ResourceType.TOPIC, raw_topic, "LITERAL", AclOperation.READ),
        "clean_write": (ResourceType.TOPIC, clean_topic, "LITERAL", AclOperation.WRITE),
        "dead_letter_write": (ResourceType.TOPIC, dead_letter_topic, "LITERAL", AclOperation.WRITE),
        "group_read": (ResourceType.GROUP, group_id, "LITERAL", AclOperation.READ),
        "transactional_id_write": (
            ResourceType.TRANSACTIONAL_ID,
            group_id,
            "PREFIXED",
            AclOperation.WRITE,
        ),
    }
    unknown = set(without) - set(named)
    if unknown:
        raise ValueError(f"no such ACL: {sorted(unknown)}")
    return [
        AclBinding(
            resource_type,
            name,
            ResourcePatternType[pattern],
            principal.principal,
            "*",
            operation,
            AclPermissionType.ALLOW,
        )
        for key, (resource_type, name, pattern, operation) in named.items()
        if key not in without
    ]


def receiver_acls(principal: Principal, *, raw_topic: str) -> list[AclBinding]:
    """The webhook receiver's one right: write the raw topic. No other principal gets
    WRITE on it (the broker denies what no ACL allows), because no signature covers
    Rivo's topic header: whoever can write the raw topic can relabel a signed body's
    event type. Since Kafka 3.0 WRITE on a topic also allows an idempotent producer."""
    return [
        AclBinding(
            ResourceType.TOPIC,
            raw_topic,
            ResourcePatternType.LITERAL,
            principal.principal,
            "*",
            AclOperation.WRITE,
            AclPermissionType.ALLOW,
        )
    ]
