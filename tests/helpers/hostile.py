"""A catalogue of hostile input: each class of attack or accident, the outcome the
service must give it, and why. Used by the integration test that sends every case
through the running service, by the pipeline unit tests, and as the fuzzer's seeds.

Every case is validly signed unless the case is about the signature, so that it reaches
the check it is aimed at (the service runs with a secret for each provider).
"""

from __future__ import annotations

import base64
import copy
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from consumer.dev.samples import LOCAL_SECRETS
from consumer.dev.signing import (
    SIGNERS,
    mage_loyalty_headers,
    rivo_documented_headers,
    rivo_wire_headers,
)
from consumer.pipeline import MAX_NESTING_DEPTH
from consumer.providers import PROVIDERS, mage_loyalty, rivo
from consumer.providers.fields import (
    MAX_EMAIL_CHARACTERS,
    MAX_HOST_NAME_CHARACTERS,
    MAX_NAME_CHARACTERS,
    MAX_REWARD_NAME_CHARACTERS,
)
from consumer.records import HeaderList
from consumer.schemas import load_schema
from tests.helpers import payloads

ACCEPTED = "accepted"
IGNORED = "ignored"

ONE_MEBIBYTE = 1024 * 1024
# Incompressible (the producer compresses with lz4) and the same on every run.
ONE_MEBIBYTE_OF_NOISE = random.Random(9).randbytes(ONE_MEBIBYTE)
RIVO_EVENT = rivo.PROVIDER.redemption_event
MAGE_EVENT = mage_loyalty.PROVIDER.redemption_event


@dataclass(frozen=True)
class HostileCase:
    name: str
    value: bytes | None
    headers: HeaderList
    expected: str  # accepted, ignored, or the dead letter's loyalty.error.reason
    field: str | None  # the dead letter's loyalty.error.field, when one is named
    why: str
    # Documented as one row of the table in docs/hostile-input.md; the generated
    # wrong-type cases share one.
    row: str = ""

    @property
    def key(self) -> bytes:
        return self.name.encode()


# -- building blocks ------------------------------------------------------------------


def rivo_body(change: Callable[[dict], Any] | None = None) -> dict[str, Any]:
    body = payloads.rivo_seed()
    if change:
        change(body)
    return body


def mage_body(change: Callable[[dict], Any] | None = None) -> dict[str, Any]:
    body = payloads.mage_seed()
    if change:
        change(body)
    return body


def rivo_signed(value: bytes, extra: HeaderList = ()) -> HeaderList:
    return [*rivo_documented_headers(LOCAL_SECRETS["rivo"], value, RIVO_EVENT), *extra]


def mage_signed(value: bytes, extra: HeaderList = ()) -> HeaderList:
    return [*mage_loyalty_headers(LOCAL_SECRETS["mage_loyalty"], value, MAGE_EVENT), *extra]


def dumps(body: Any) -> bytes:
    return orjson.dumps(body)


def rivo_case(name, body_or_value, expected, field, why, extra: HeaderList = ()) -> HostileCase:
    value = body_or_value if isinstance(body_or_value, bytes) else dumps(body_or_value)
    return HostileCase(name, value, rivo_signed(value, extra), expected, field, why)


def mage_case(name, body_or_value, expected, field, why, extra: HeaderList = ()) -> HostileCase:
    value = body_or_value if isinstance(body_or_value, bytes) else dumps(body_or_value)
    return HostileCase(name, value, mage_signed(value, extra), expected, field, why)


def with_field(path: str, value: Any) -> Callable[[dict], Any]:
    return lambda body: payloads.set_path(body, path, value)


def seed_without_closing_brace() -> bytes:
    return payloads.rivo_seed_bytes().rstrip()[:-1]


def rivo_headers_replacing(value: bytes, name: str, replacement: bytes | None) -> HeaderList:
    return [
        (header, replacement if header.lower() == name else header_value)
        for header, header_value in rivo_signed(value)
    ]


def mage_headers_replacing(value: bytes, name: str, replacement: bytes | None) -> HeaderList:
    return [
        (header, replacement if header.lower() == name else header_value)
        for header, header_value in mage_signed(value)
    ]


# -- the hand-written classes ---------------------------------------------------------


def _hand_written() -> Iterator[HostileCase]:
    valid = dumps(rivo_body())
    good_signature = dict(rivo_signed(valid))["Rivo-Signature"]
    mage_valid = dumps(mage_body())
    mage_signature = dict(mage_signed(mage_valid))["X-Webhook-Signature"]

    # Framing and encoding.
    yield rivo_case("empty value", b"", "invalid_json", None, "zero bytes are not JSON")
    yield HostileCase(
        "tombstone",
        None,
        [],
        "invalid_json",
        None,
        "a record without a value (a tombstone) carries no webhook",
    )
    yield rivo_case(
        "5 MB value",
        b'{"padding":"' + b"x" * (5 * ONE_MEBIBYTE) + b'"}',
        "payload_too_large",
        None,
        "over the 1 MiB payload limit; refused before parsing, dead-lettered without its "
        "value (the dead-letter topic's size limit), which the raw topic still holds",
    )
    yield rivo_case(
        "invalid UTF-8",
        valid.replace(b'"points"', b'"p\xffints"'),
        "invalid_json",
        None,
        "JSON text must be UTF-8",
    )
    yield rivo_case(
        "overlong UTF-8",
        valid.replace(b'"points"', b'"\xc0\xafpoints"'),
        "invalid_json",
        None,
        "overlong encodings smuggle characters past filters; not UTF-8",
    )
    yield rivo_case(
        "UTF-16 JSON",
        valid.decode().encode("utf-16"),
        "invalid_json",
        None,
        "JSON text must be UTF-8",
    )
    yield rivo_case(
        "UTF-8 BOM",
        b"\xef\xbb\xbf" + valid,
        "invalid_json",
        None,
        "RFC 8259 forbids a byte order mark in JSON text; the parser refuses it",
    )
    yield rivo_case(
        "NUL byte after the JSON",
        valid + b"\x00",
        "invalid_json",
        None,
        "bytes after the document (a C-string terminator) are trailing garbage",
    )
    yield rivo_case(
        "escaped NUL in a text field",
        rivo_body(with_field("name", "Ten\u0000off")),
        ACCEPTED,
        None,
        "an escaped NUL is a legal JSON character in free text; Avro strings carry it",
    )
    yield rivo_case(
        "lone surrogate escaped in JSON",
        valid.replace(b'"name":', b'"note":"\\ud800","name":', 1),
        "invalid_json",
        None,
        "a lone surrogate is no Unicode character and cannot be encoded as UTF-8",
    )
    yield rivo_case(
        "100,000-deep nesting",
        b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "invalid_json",
        None,
        "the parser stops at depth 1024 instead of exhausting the stack",
    )
    yield rivo_case(
        "60-deep nesting in an unknown field",
        seed_without_closing_brace() + b',"deep":' + b"[" * 60 + b"]" * 60 + b"}",
        ACCEPTED,
        None,
        f"within the nesting limit ({MAX_NESTING_DEPTH} levels); unknown fields are allowed",
    )
    yield rivo_case(
        "500-deep nesting in an unknown field",
        seed_without_closing_brace() + b',"deep":' + b"[" * 500 + b"]" * 500 + b"}",
        "invalid_json",
        None,
        f"over the nesting limit ({MAX_NESTING_DEPTH} levels), checked on the bytes before "
        "parsing: nothing after it walks attacker-shaped depth",
    )
    deep_violation = dumps(rivo_body(with_field("customer.email", {"a": 1})))
    yield rivo_case(
        "1,000-deep nesting beside a schema violation",
        deep_violation[:-1] + b',"deep":' + b"[" * 1000 + b"]" * 1000 + b"}",
        "invalid_json",
        None,
        "explaining the violation once walked the whole body recursively and crashed "
        "(RecursionError) on every restart; the nesting limit refuses it first",
    )
    yield rivo_case(
        "10,000-deep nesting inside a string",
        rivo_body(with_field("note", "[{" * 10_000)),
        ACCEPTED,
        None,
        "brackets inside a JSON string are text, not nesting",
    )
    yield rivo_case(
        "1e400",
        valid.replace(b'"points_amount":', b'"points_amount":1e400,"was":', 1),
        "invalid_json",
        None,
        "a number beyond a double is refused by the parser rather than read as infinity",
    )
    yield rivo_case(
        "5,000-digit integer",
        valid.replace(b'"points_amount":', b'"points_amount":' + b"9" * 5000 + b',"was":', 1),
        "invalid_json",
        None,
        "an integer beyond 64 bits is refused by the parser (no slow bignum conversion)",
    )
    yield rivo_case(
        "5,000-digit integer in a string",
        rivo_body(with_field("points_amount", "9" * 5000)),
        "normalization_error",
        "points_amount",
        "longer than any 64-bit count; refused before int() does quadratic work",
    )
    yield rivo_case(
        "duplicate keys",
        seed_without_closing_brace() + b',"points_amount":7}',
        ACCEPTED,
        None,
        "the last value wins, as in every mainstream parser; the signature covers the "
        "bytes, so the sender chose both",
    )
    yield rivo_case(
        "trailing garbage",
        valid + b" garbage",
        "invalid_json",
        None,
        "anything after the document makes the text invalid",
    )
    yield rivo_case(
        "two JSON documents",
        valid + valid,
        "invalid_json",
        None,
        "one record is one webhook; a concatenation is not JSON",
    )
    yield rivo_case(
        "NaN literal",
        valid.replace(b'"points_amount":', b'"points_amount":NaN,"was":', 1),
        "invalid_json",
        None,
        "NaN is not JSON",
    )
    yield rivo_case(
        "comments",
        b"/* hi */" + valid,
        "invalid_json",
        None,
        "comments are not JSON",
    )
    yield rivo_case("JSON array", b"[]", "invalid_json", None, "a webhook body is an object")
    yield rivo_case("JSON null", b"null", "invalid_json", None, "a webhook body is an object")
    yield rivo_case(
        "JSON string",
        b'"points_redemption/created"',
        "invalid_json",
        None,
        "a webhook body is an object",
    )

    # Headers.
    yield rivo_case(
        "binary header value",
        rivo_body(),
        ACCEPTED,
        None,
        "unrelated headers are carried, never interpreted",
        extra=[("x-binary", bytes(range(256)))],
    )
    yield HostileCase(
        "binary signature header",
        valid,
        rivo_headers_replacing(valid, "rivo-signature", b"\xff\xfe\x00" + good_signature),
        "signature_invalid",
        "Rivo-Signature",
        "non-UTF-8 bytes never equal a base64 signature",
    )
    yield HostileCase(
        "duplicated signature header, wrong one first",
        valid,
        [("Rivo-Signature", b"AAAA"), *rivo_signed(valid)],
        "signature_invalid",
        "Rivo-Signature",
        "the first of repeated headers counts, as the HTTP receiver saw it first",
    )
    yield HostileCase(
        "duplicated signature header, right one first",
        valid,
        [*rivo_signed(valid), ("Rivo-Signature", b"AAAA")],
        ACCEPTED,
        None,
        "the first of repeated headers counts",
    )
    yield HostileCase(
        "duplicated event-type header",
        valid,
        [*rivo_signed(valid), ("rivo-webhook-topic", b"points_event/created")],
        ACCEPTED,
        None,
        "the first of repeated headers counts",
    )
    yield rivo_case(
        "empty header name",
        rivo_body(),
        ACCEPTED,
        None,
        "a header without a name is carried, never interpreted",
        extra=[("", b"value"), ("", b"")],
    )
    yield rivo_case(
        "null header value",
        rivo_body(),
        ACCEPTED,
        None,
        "a header without a value is carried, never interpreted",
        extra=[("x-null", None)],
    )
    yield rivo_case(
        "1 MB header value, accepted record",
        rivo_body(),
        ACCEPTED,
        None,
        "headers are not copied onto clean records",
        extra=[("x-padding", ONE_MEBIBYTE_OF_NOISE)],
    )
    yield HostileCase(
        "1 MB header value, rejected record",
        b"{not json",
        [("x-padding", ONE_MEBIBYTE_OF_NOISE)],
        "invalid_json",
        None,
        "dead-lettered without the value and the original headers when they do not fit "
        "the dead-letter topic; the raw topic still holds both",
    )
    yield HostileCase(
        "1 MB event-type header",
        valid,
        rivo_headers_replacing(valid, "rivo-webhook-topic", b"t" * ONE_MEBIBYTE),
        IGNORED,
        None,
        "an event type that is not the redemption's is ignored (metric label 'other')",
    )
    yield HostileCase(
        "null signature header",
        valid,
        rivo_headers_replacing(valid, "rivo-signature", None),
        "signature_missing",
        "Rivo-Signature",
        "a header without a value is absent",
    )

    # Signatures.
    yield HostileCase(
        "signature in hex instead of base64",
        valid,
        rivo_headers_replacing(
            valid, "rivo-signature", base64.b64decode(good_signature).hex().encode()
        ),
        "signature_invalid",
        "Rivo-Signature",
        "the right HMAC in the wrong encoding is not the signature",
    )
    yield HostileCase(
        "signature in URL-safe base64 without padding",
        valid,
        rivo_headers_replacing(
            valid,
            "rivo-signature",
            base64.urlsafe_b64encode(base64.b64decode(good_signature)).rstrip(b"="),
        ),
        "signature_invalid",
        "Rivo-Signature",
        "only the documented encoding is compared",
    )
    yield HostileCase(
        "Mage signature in base64 instead of hex",
        mage_valid,
        mage_headers_replacing(
            mage_valid,
            "x-webhook-signature",
            b"sha256=" + base64.b64encode(bytes.fromhex(mage_signature.decode()[7:])),
        ),
        "signature_invalid",
        "X-Webhook-Signature",
        "the right HMAC in the wrong encoding is not the signature",
    )
    yield HostileCase(
        "Mage signature with upper-case prefix and hex",
        mage_valid,
        mage_headers_replacing(mage_valid, "x-webhook-signature", mage_signature.upper()),
        ACCEPTED,
        None,
        "hex and its prefix are case-insensitive",
    )
    yield HostileCase(
        "truncated signature",
        valid,
        rivo_headers_replacing(valid, "rivo-signature", good_signature[:-4]),
        "signature_invalid",
        "Rivo-Signature",
        "a prefix of the signature is not the signature",
    )
    yield HostileCase(
        "truncated Mage signature",
        mage_valid,
        mage_headers_replacing(mage_valid, "x-webhook-signature", mage_signature[:20]),
        "signature_invalid",
        "X-Webhook-Signature",
        "a prefix of the signature is not the signature",
    )
    yield HostileCase(
        "empty signature",
        valid,
        rivo_headers_replacing(valid, "rivo-signature", b""),
        "signature_invalid",
        "Rivo-Signature",
        "an empty signature matches nothing",
    )
    other_body = dumps(rivo_body(with_field("points_amount", 1)))
    yield HostileCase(
        "valid signature over a different body",
        valid,
        rivo_headers_replacing(
            valid, "rivo-signature", dict(rivo_signed(other_body))["Rivo-Signature"]
        ),
        "signature_invalid",
        "Rivo-Signature",
        "a signature vouches for one body only (replayed onto another)",
    )
    wire = rivo_wire_headers(LOCAL_SECRETS["rivo"], valid, RIVO_EVENT)
    yield HostileCase(
        "Standard Webhooks signature with the id header missing",
        valid,
        [(name, value) for name, value in wire if name != "rivo-webhook-id"],
        "signature_missing",
        "rivo-webhook-id",
        "the id is part of the signed string",
    )
    yield HostileCase(
        "Standard Webhooks signature with another timestamp",
        valid,
        [(name, b"1" if name == "rivo-webhook-timestamp" else value) for name, value in wire],
        "signature_invalid",
        "rivo-webhook-signature",
        "the timestamp is part of the signed string",
    )
    yield HostileCase(
        "no signature at all",
        valid,
        [("rivo-webhook-topic", RIVO_EVENT.encode())],
        "signature_missing",
        "Rivo-Signature",
        "a provider with a secret configured must sign",
    )

    # Header-derived values (no signature covers a header).
    for label, shop, expected in (
        ("a host name", b"shop-1.myshopify.com", ACCEPTED),
        ("CR LF", b"shop.myshopify.com\r\nX-Injected: 1", "normalization_error"),
        ("an escape sequence", b"\x1b[2Jshop.myshopify.com", "normalization_error"),
        ("120 KB", b"a" * 120_000, "normalization_error"),
        ("a port", b"shop.myshopify.com:443", "normalization_error"),
        ("a URL", b"https://shop.myshopify.com/", "normalization_error"),
        ("not UTF-8", b"shop\xff.myshopify.com", "normalization_error"),
    ):
        yield rivo_case(
            f"X-Shop-Domain with {label}",
            rivo_body(),
            expected,
            "X-Shop-Domain" if expected != ACCEPTED else None,
            "X-Shop-Domain sets `shop` and no signature covers it: only a host name of at "
            f"most {MAX_HOST_NAME_CHARACTERS} characters passes",
            extra=[("X-Shop-Domain", shop)],
        )
    yield HostileCase(
        "spoofed dead-letter headers",
        b"{not json",
        [
            ("loyalty.error.provider", b"mage_loyalty"),
            ("loyalty.error.reason", b"signature_invalid"),
            ("loyalty.error.value_omitted_bytes", b"1"),
            ("__connect.errors.topic", b"elsewhere"),
        ],
        "invalid_json",
        None,
        "the service writes every one of its dead-letter headers, empty where it does not "
        "apply, after the original ones; readers take the last, the service's own",
    )
    expiry = rivo_body(with_field("customer.event_type", "notification/reward_expiry_last_chance"))
    expiry_value = dumps(expiry)
    yield HostileCase(
        "signed reward-expiry body relabelled as a redemption by the topic header",
        expiry_value,
        [
            (name, RIVO_EVENT.encode() if name == "rivo-webhook-topic" else value)
            for name, value in rivo_documented_headers(
                LOCAL_SECRETS["rivo"], expiry_value, "notification/reward_expiry_last_chance"
            )
        ],
        ACCEPTED,
        None,
        "Rivo's signature does not cover the topic header and its bodies do not reliably "
        "name their type, so the header decides (contract); the defence is that only the "
        "webhook receiver may write the raw topic (ACL, docs/hostile-input.md)",
    )

    # Routing.
    yield HostileCase(
        "no provider recognisable",
        b'{"hello":"world"}',
        [],
        "unknown_provider",
        None,
        "neither a header nor a body field names a provider",
    )
    yield HostileCase(
        "another provider event",
        valid,
        rivo_documented_headers(LOCAL_SECRETS["rivo"], valid, "points_event/created"),
        IGNORED,
        None,
        "a known provider's other events are counted, not forwarded",
    )

    # Timestamps.
    for label, stamp, expected, why in (
        (
            "year 0",
            "0000-01-01T00:00:00Z",
            "normalization_error",
            "there is no year 0 in ISO 8601's basic calendar range Python reads",
        ),
        (
            "year 10000",
            "10000-01-01T00:00:00Z",
            "normalization_error",
            "five-digit years are outside ISO 8601's basic format",
        ),
        (
            "leap second",
            "2016-12-31T23:59:60Z",
            ACCEPTED,
            "RFC 3339 allows second 60; read as the next second, as POSIX time does",
        ),
        (
            "leap second with fraction and offset",
            "2017-01-01T00:59:60.5+01:00",
            ACCEPTED,
            "second 60 with a fraction and an offset",
        ),
        (
            "year 1 just before UTC",
            "0001-01-01T00:00:00+01:00",
            "normalization_error",
            "before year 1 once moved to UTC",
        ),
        (
            "timestamp with a control character",
            "2026-02-18T12:00:00Z\n",
            ACCEPTED,
            "surrounding whitespace is trimmed",
        ),
    ):
        yield rivo_case(
            f"timestamp: {label}",
            rivo_body(with_field("applied_at", stamp)),
            expected,
            "applied_at" if expected != ACCEPTED else None,
            why,
        )

    # Personal data and ids.
    for label, email in (
        ("NUL", "jane\u0000@example.com"),
        ("CR LF header injection", "jane@example.com\r\nBcc: all@example.com"),
        ("escape sequence", "jane\u001b[2J@example.com"),
        ("DEL", "jane\u007f@example.com"),
    ):
        yield rivo_case(
            f"email with control character: {label}",
            rivo_body(with_field("customer.email", email)),
            "normalization_error",
            "customer.email",
            "an address with control characters is no address, and injects into mail "
            "headers and logs downstream",
        )
    yield mage_case(
        "Mage email with control character",
        mage_body(with_field("data.email", "jane@example.com\n")),
        ACCEPTED,
        None,
        "surrounding whitespace, a trailing newline included, is trimmed",
    )
    yield rivo_case(
        "id with newline injection",
        rivo_body(with_field("id", "123\nX-Injected: 1")),
        "normalization_error",
        "id",
        "the event id is a number; it becomes a header and part of the key",
    )
    yield rivo_case(
        "customer id with newline injection",
        rivo_body(with_field("customer.id", "6789012345\r\nX-Injected: 1")),
        "normalization_error",
        "customer.id",
        "the customer id becomes the record key: digits only",
    )
    yield mage_case(
        "Mage customer id with newline injection",
        mage_body(with_field("data.shopify_customer_id", "6789012345\nX")),
        "normalization_error",
        "data.shopify_customer_id",
        "the customer id becomes the record key: digits only",
    )
    yield rivo_case(
        "reward id with newline",
        rivo_body(with_field("reward.id", "r1\r\nX-Injected: 1")),
        ACCEPTED,
        None,
        "a reward id is opaque provider text: an Avro string, never a header, key or log field",
    )
    yield rivo_case(
        "negative points",
        rivo_body(with_field("points_amount", -500)),
        "normalization_error",
        "points_amount",
        "a redemption spends a non-negative count",
    )
    yield rivo_case(
        "points in exponent notation",
        rivo_body(with_field("points_amount", "1e3")),
        "normalization_error",
        "points_amount",
        "a count is digits",
    )
    yield rivo_case(
        "amount 1e-999999999",
        rivo_body(with_field("credits_amount", "1e-999999999")),
        "normalization_error",
        "credits_amount",
        "12 bytes that would expand to a gigabyte of decimal digits",
    )
    yield rivo_case(
        "amount Infinity",
        rivo_body(with_field("credits_amount", "Infinity")),
        "normalization_error",
        "credits_amount",
        "not a finite amount",
    )
    yield rivo_case(
        "customer id zero",
        rivo_body(with_field("customer.id", 0)),
        "normalization_error",
        "customer.id",
        "Shopify ids are positive",
    )
    yield rivo_case(
        "600 KB reward name",
        rivo_body(with_field("reward.name", "x" * 600_000)),
        "normalization_error",
        "reward.name",
        f"free text is bounded ({MAX_REWARD_NAME_CHARACTERS} characters): copied into "
        "reward.name and reward.label it made a clean record over the topic's limit, and "
        "the service stopped on every restart",
    )
    yield rivo_case(
        "600 KB reward label",
        rivo_body(with_field("name", "x" * 600_000)),
        "normalization_error",
        "name",
        "the label shown to the customer is free text, bounded like the name",
    )
    yield mage_case(
        "600 KB Mage reward name",
        mage_body(with_field("data.reward_name", "x" * 600_000)),
        "normalization_error",
        "data.reward_name",
        "Mage copies the name into reward.name and reward.label: bounded",
    )
    yield rivo_case(
        "300-character first name",
        rivo_body(with_field("customer.first_name", "J" * 300)),
        "normalization_error",
        "customer.first_name",
        f"names are bounded ({MAX_NAME_CHARACTERS} characters, as Shopify's own)",
    )
    yield rivo_case(
        "300-character email",
        rivo_body(with_field("customer.email", "j" * 290 + "@example.com")),
        "normalization_error",
        "customer.email",
        f"an address is at most {MAX_EMAIL_CHARACTERS} characters (RFC 5321)",
    )
    yield rivo_case(
        "negative points balance",
        rivo_body(with_field("customer.points_tally", -120)),
        ACCEPTED,
        None,
        "a balance goes negative when points earned on a refunded order are clawed back",
    )
    yield mage_case(
        "negative Mage points balance",
        mage_body(with_field("data.points_balance", "-5")),
        ACCEPTED,
        None,
        "only the points spent must not be negative",
    )
    yield rivo_case(
        "amount with trailing zeros",
        rivo_body(with_field("credits_amount", "25.5000")),
        ACCEPTED,
        None,
        'one amount, one spelling: "25.50"',
    )
    for label, amount in (
        ("Arabic-Indic digits", "\u0661\u0662\u0663"),
        ("digit separator", "1_000.5"),
    ):
        yield rivo_case(
            f"amount with {label}",
            rivo_body(with_field("credits_amount", amount)),
            "normalization_error",
            "credits_amount",
            "an amount is ASCII digits with one point; Decimal() alone would read it",
        )
    for label, gid, expected in (
        ("Arabic-Indic digits", "gid://shopify/Customer/\u0661\u0662\u0663", "normalization_error"),
        ("zero", "gid://shopify/Customer/0", "normalization_error"),
        ("an injected newline", "gid://shopify/Customer/12\n34", "normalization_error"),
        ("leading zeros", "gid://shopify/Customer/0009876543210987", ACCEPTED),
    ):
        yield rivo_case(
            f"gid customer id with {label}",
            rivo_body(with_field("customer.id", gid)),
            expected,
            "customer.id" if expected != ACCEPTED else None,
            "a gid's number follows the plain id's rules: ASCII digits, positive, "
            "leading zeros dropped (it becomes the record key)",
        )
    yield rivo_case(
        "type tag key",
        rivo_body(with_field("-type", "loyalty.raw.rivo.Customer")),
        ACCEPTED,
        None,
        "fastavro reads a '-type' key as a record tag; for us it is an unknown field",
    )


# -- every field of both raw schemas set to each wrong JSON type ---------------------

JSON_SAMPLES: dict[str, Any] = {
    "null": None,
    "boolean": True,
    "integer": 7,
    "fraction": 1.5,
    "string": "text",
    "array": [],
    "object": {},
}


def _accepts(avro_type: Any, json_name: str) -> bool:
    if isinstance(avro_type, list):
        return any(_accepts(branch, json_name) for branch in avro_type)
    kind = avro_type.get("type") if isinstance(avro_type, dict) else avro_type
    allowed = {
        "null": {"null"},
        "boolean": {"boolean"},
        "long": {"integer"},
        "int": {"integer"},
        "double": {"integer", "fraction"},
        "float": {"integer", "fraction"},
        "string": {"string"},
        "record": {"object"},  # the right type; missing fields are their own cases
        "array": {"array"},
        "map": {"object"},
    }
    return json_name in allowed[kind]


def _fields(schema: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(schema, list):
        for branch in schema:
            yield from _fields(branch, prefix)
    elif isinstance(schema, dict) and schema.get("type") == "record":
        for field in schema["fields"]:
            path = f"{prefix}{field['name']}"
            yield path, field["type"]
            yield from _fields(field["type"], f"{path}.")


WRONG_TYPE_ROW = "every field of every raw schema as each wrong JSON type"


def _wrong_types() -> Iterator[HostileCase]:
    # Every registered provider, signed as it signs (its signing.toml), so that each
    # case reaches the schema check.
    for provider in PROVIDERS:
        secret = LOCAL_SECRETS[provider.name]
        sign = SIGNERS[provider.name]
        for path, avro_type in _fields(load_schema(provider.raw_schema_file)):
            for json_name, sample in JSON_SAMPLES.items():
                if _accepts(avro_type, json_name):
                    continue
                body = payloads.seed(provider.name)
                parent = body
                *parents, last = path.split(".")
                for key in parents:
                    parent = parent.setdefault(key, {}) if parent.get(key) is not None else None
                    if parent is None:
                        break
                if parent is None:
                    continue  # the enclosing object is absent in the seed
                parent[last] = copy.deepcopy(sample)
                value = dumps(body)
                yield HostileCase(
                    f"{provider.name}.{path} as {json_name}",
                    value,
                    sign(secret, value, provider.redemption_event),
                    "schema_violation",
                    path,
                    f"the raw schema types {path}; a {json_name} is refused naming the field",
                    row=WRONG_TYPE_ROW,
                )


def catalogue() -> list[HostileCase]:
    cases = [*_hand_written(), *_wrong_types()]
    names = [case.name for case in cases]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise AssertionError(f"catalogue names must be unique: {sorted(duplicates)}")
    return cases


def readme_table(cases: list[HostileCase] | None = None) -> str:
    """The catalogue as the markdown table of docs/hostile-input.md: one row per class."""
    cases = catalogue() if cases is None else cases
    lines = ["| input | outcome | field | why |", "|---|---|---|---|"]
    for case in cases:
        if case.row:
            continue
        field = f"`{case.field}`" if case.field else ""
        lines.append(f"| {_cell(case.name)} | `{case.expected}` | {field} | {_cell(case.why)} |")
    lines.append(
        # No count: a new provider's schema adds cases without changing the docs.
        f"| {WRONG_TYPE_ROW} (generated from the schemas of the registered providers) "
        "| `schema_violation` | the field's path | the raw schema types every field; "
        "a value of another JSON type is refused, naming the field |"
    )
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
