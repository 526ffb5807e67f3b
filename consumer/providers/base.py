"""What the pipeline asks of a provider, and the helpers providers share. A provider
module does no I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, Protocol

# Header values by lower-cased name (consumer.records.header_lookup).
Headers = Mapping[str, str]
# A canonical LoyaltyRedemption without `provider_event_type` and `metadata`, which the
# pipeline adds: it has already decided the event type once.
CanonicalRecord = dict[str, Any]


class Provider(Protocol):
    name: str
    """Symbol in the canonical `provider` enum; also the metric label and secret prefix."""
    redemption_event: str
    """The provider's event type of a redemption; other event types are ignored."""
    raw_schema_file: str
    """File among the schemas that a redemption body must satisfy."""
    known_event_types: frozenset[str]
    """Every event type the provider documents; others are labelled 'other' in metrics."""

    def recognises_headers(self, headers: Headers) -> bool:
        """True when a header says the webhook is from this provider (strong evidence)."""

    def recognises_body(self, body: Mapping[str, Any]) -> bool:
        """True when the body alone says so (asked only when no headers decided)."""

    def event_type(self, headers: Headers, body: Mapping[str, Any]) -> str | None: ...

    def verify_signature(self, secrets: tuple[str, ...], headers: Headers, raw_body: bytes) -> None:
        """Raise SignatureMissing or SignatureInvalid unless one secret verifies."""

    def normalise(self, body: Mapping[str, Any], headers: Headers) -> CanonicalRecord: ...


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def base64_hmac_sha256(key: bytes, message: bytes) -> bytes:
    """The signature most webhook schemes send: base64 of HMAC-SHA256."""
    return base64.b64encode(hmac_sha256(key, message))


def first_text(*candidates: Any) -> str | None:
    """The first candidate that is a non-empty string. Providers name the event type in
    a body field, a header, or both, each in its own order of trust."""
    for candidate in candidates:
        if isinstance(candidate, str) and candidate:
            return candidate
    return None


def matches_any(expected: list[bytes], presented: list[bytes]) -> bool:
    """Constant-time comparison of every candidate pair: timing reveals nothing about
    which secret or which signature came close."""
    found = False
    for want in expected:
        for got in presented:
            found |= hmac.compare_digest(want, got)
    return found
