"""Clean records in the Confluent wire format, through a schema registry.

The schema is registered (or found, when the registry has it already) once, before the
loop starts: `wait_until_registered` retries with back-off while the registry is
unreachable, as the start-up does for the brokers, and the probes and a metric say so.
The loop itself never calls the registry: each record is the magic byte, the schema id
and the Avro body, written by the compiled encoder. A registry outage after start-up
therefore costs nothing, and one at start-up delays the start instead of crashing the
service on its first accepted record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from consumer.avro_compiled import compile_encoder
from consumer.config import Settings
from consumer.errors import ConfigError
from consumer.schemas import CANONICAL_SCHEMA_FILE, schema_library
from consumer.waiting import StartupWait

log = logging.getLogger(__name__)

# Confluent wire format: magic byte 0, then the schema id as a 4-byte big-endian integer.
WIRE_FORMAT_MAGIC = b"\x00"
SCHEMA_ID_BYTES = 4
# Back-off between attempts (doubling up to the cap), and a repeated "cannot reach"
# line at most this often: the same rhythm as the wait for the brokers.
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0
REMINDER_SECONDS = 60.0
# One registration request may take this long before it counts as a failed attempt.
REQUEST_TIMEOUT_SECONDS = 10
# HTTP statuses that mean "the registry is there but not able to answer now": wait.
# Any other refusal (401, 403, 409 incompatible schema, 422) is a deployment mistake.
TRANSIENT_STATUS_FLOOR = 500


class RegistryEncoder:
    """encode(record) -> Confluent wire format bytes, once `register()` has succeeded."""

    def __init__(self, settings: Settings) -> None:
        library = schema_library(settings.schema_dir)
        self.url = settings.schema_registry_url or ""
        self.subject = f"{settings.clean_topic}-value"
        self._schema_text = library.text(CANONICAL_SCHEMA_FILE)
        self._schema = library.canonical()
        self._client_config: dict[str, Any] = {
            "url": self.url,
            "timeout": REQUEST_TIMEOUT_SECONDS,
        }
        if settings.schema_registry_basic_auth:
            self._client_config["basic.auth.user.info"] = settings.schema_registry_basic_auth
        self._encode: Callable[[Any], bytes] | None = None
        self.schema_id: int | None = None

    @property
    def registered(self) -> bool:
        return self._encode is not None

    def register(self) -> int:
        """Registers the canonical schema under the subject (idempotent: an unchanged
        schema gets its existing id). Raises what the registry client raises."""
        from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

        client = SchemaRegistryClient(self._client_config)
        schema_id = client.register_schema(self.subject, Schema(self._schema_text, "AVRO"))
        prefix = WIRE_FORMAT_MAGIC + schema_id.to_bytes(SCHEMA_ID_BYTES, "big")
        self._encode = compile_encoder(self._schema, prefix)
        self.schema_id = schema_id
        return schema_id

    def __call__(self, record: Mapping[str, Any]) -> bytes:
        if self._encode is None:
            # Only a caller that skipped the start-up wait gets here (the service never
            # does): registering now is what it asked for.
            self.register()
        assert self._encode is not None
        return self._encode(record)


def wait_until_registered(
    encoder: RegistryEncoder,
    stop_requested: Callable[[], bool],
    report: Callable[[str | None], None],
) -> bool:
    """Registers the schema, waiting with back-off while the registry cannot be reached;
    `report(problem)` is called with what is wrong while waiting and None once done.
    False when a stop was asked for meanwhile. Raises ConfigError when the registry
    answers with a refusal that waiting cannot fix."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    wait = StartupWait(
        log,
        "cannot reach the schema registry",
        "SCHEMA_REGISTRY_URL",
        stop_requested,
        RETRY_FIRST_SECONDS,
        RETRY_MAX_SECONDS,
        REMINDER_SECONDS,
    )
    while not stop_requested():
        try:
            schema_id = encoder.register()
        except SchemaRegistryError as exc:
            if 0 < exc.http_status_code < TRANSIENT_STATUS_FLOOR:
                raise ConfigError(
                    f"SCHEMA_REGISTRY_URL: the registry refused the schema for subject "
                    f"{encoder.subject}: {exc.error_message} (HTTP {exc.http_status_code})"
                ) from None
            problem = f"HTTP {exc.http_status_code}: {exc.error_message}"
        except Exception as exc:  # the HTTP client's connection errors, whatever its kind
            problem = f"{type(exc).__name__}: {exc}"
        else:
            report(None)
            log.info(
                "schema registered",
                extra={
                    "subject": encoder.subject,
                    "schema_id": schema_id,
                    "waited_seconds": wait.waited_seconds,
                },
            )
            return True
        report(f"cannot reach the schema registry: {problem}")
        wait.failed(problem)
    return False
