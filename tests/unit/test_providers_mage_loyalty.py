"""Mage Loyalty `points.redeemed`: recognition, event types, signatures, normalisation."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest

from consumer.errors import SignatureInvalid, SignatureMissing
from consumer.pipeline import Pipeline
from consumer.providers import mage_loyalty
from consumer.records import Accepted, Ignored, Rejected
from tests.helpers import payloads
from tests.helpers.payloads import delete_path, dumps, raw_record, set_path
from tests.helpers.signing import MAGE_SIGNED_AT, mage_headers, mage_signature

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SEED_OCCURRED_AT = datetime(2026, 2, 18, 12, 0, tzinfo=UTC)
SECRET = "mage-subscription-secret"


def expected_event_id(shop, customer_id, occurred_at, points, reward_id, discount_code) -> str:
    """The contract's Mage event id: 'mage_loyalty:' + SHA-256 hex over the identifying
    fields, serialised as a compact JSON array with occurred_at in epoch milliseconds."""
    millis = (occurred_at - EPOCH) // timedelta(milliseconds=1)
    identity = [shop, customer_id, millis, points, reward_id, discount_code]
    text = json.dumps(identity, separators=(",", ":"), ensure_ascii=False)
    return "mage_loyalty:" + hashlib.sha256(text.encode()).hexdigest()


SEED_EVENT_ID = expected_event_id(
    "my-store", "6789012345", SEED_OCCURRED_AT, 500, "clrew456def", "MAGE-A1B2C3"
)


def accept(pipeline: Pipeline, body, headers=()) -> dict:
    return payloads.accept(pipeline, body, headers, provider="mage_loyalty")


reject = payloads.reject


# --- the seed payload, field by field ---------------------------------------------------


def test_seed_payload_every_contract_field(pipeline, fixed_now):
    outcome = pipeline.process(raw_record(payloads.mage_seed_bytes(), topic="raw", offset=7))

    assert isinstance(outcome, Accepted)
    assert outcome.provider == "mage_loyalty"
    assert outcome.event_type == "points.redeemed"
    assert outcome.key == b"6789012345"
    assert outcome.event_id == SEED_EVENT_ID
    assert outcome.record == {
        "event_id": SEED_EVENT_ID,
        "provider": "mage_loyalty",
        "provider_event_type": "points.redeemed",
        "provider_event_id": None,
        "shop": "my-store",
        "occurred_at": SEED_OCCURRED_AT,
        "source": "points",
        "points_redeemed": 500,
        "credits_redeemed": None,
        "points_balance_after": 200,
        "customer": {
            "shopify_customer_id": "6789012345",
            "email": "jane@example.com",
            "email_sha256": hashlib.sha256(b"jane@example.com").hexdigest(),
            "first_name": None,
            "last_name": None,
            "loyalty_status": None,
            "accepts_marketing": None,
        },
        "reward": {
            "id": "clrew456def",
            "name": "$10 off",
            "label": "$10 off",
            "type": None,
            "discount_code": "MAGE-A1B2C3",
            "expires_at": None,
            "used_at": None,
            "refunded_at": None,
        },
        "metadata": {
            "source_topic": "raw",
            "source_partition": 3,
            "source_offset": 7,
            "processed_at": fixed_now,
            "signature_verified": None,
            "consumer_version": "9.9.9-test",
        },
    }


def test_seed_event_id_is_pinned():
    # Changing how the id is computed changes every Mage event id, and downstream
    # de-duplication would then see every redelivery across the change as new.
    assert SEED_EVENT_ID == (
        "mage_loyalty:027ef58a12c09fd031d5d225927cc1214aa9909ef80f5b6ee0da3ac75b642dbb"
    )


def test_normalise_directly_matches_the_pipeline(pipeline, mage_body):
    record = mage_loyalty.PROVIDER.normalise(mage_body, {})
    via_pipeline = accept(pipeline, mage_body)
    via_pipeline.pop("metadata")
    via_pipeline.pop("provider_event_type")
    assert record == via_pipeline
    assert "metadata" not in record
    assert "provider_event_type" not in record  # the pipeline's: it decided the type


def test_the_event_type_that_made_it_a_redemption_is_the_one_recorded(pipeline, mage_body):
    # A blank body event falls back to the X-Webhook-Event header, which decides.
    body = dumps({**mage_body, "event": ""})
    record = accept(pipeline, body, [("X-Webhook-Event", b"points.redeemed")])
    assert record["provider_event_type"] == "points.redeemed"


# --- event_id stability -----------------------------------------------------------------


def test_event_id_survives_whitespace_and_key_order(pipeline, mage_body):
    respelled = payloads.dumps_differently(mage_body)
    assert respelled != payloads.mage_seed_bytes()
    assert accept(pipeline, respelled)["event_id"] == SEED_EVENT_ID


@pytest.mark.parametrize(
    "spelling",
    [
        "2026-02-18T12:00:00Z",
        "2026-02-18T12:00:00.000+00:00",
        "2026-02-18T13:00:00.000+01:00",
        "2026-02-18T07:00:00-05:00",
        "2026-02-18T12:00:00.000",
    ],
)
def test_event_id_survives_another_spelling_of_the_same_instant(pipeline, mage_body, spelling):
    record = accept(pipeline, set_path(mage_body, "timestamp", spelling))
    assert record["occurred_at"] == SEED_OCCURRED_AT
    assert record["event_id"] == SEED_EVENT_ID


def test_event_id_survives_points_as_a_string_and_a_numeric_customer_id(pipeline, mage_body):
    set_path(mage_body, "data.points_redeemed", "500")
    set_path(mage_body, "data.shopify_customer_id", 6789012345)
    assert accept(pipeline, mage_body)["event_id"] == SEED_EVENT_ID


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("shop", "other-store"),
        ("data.shopify_customer_id", "6789012346"),
        ("timestamp", "2026-02-18T12:00:00.001Z"),
        ("data.points_redeemed", 501),
        ("data.reward_id", "clrew456deg"),
        ("data.discount_code", "MAGE-A1B2C4"),
        ("shop", None),
        ("data.reward_id", None),
        ("data.discount_code", None),
    ],
)
def test_event_id_changes_with_each_identifying_field(pipeline, mage_body, path, value):
    record = accept(pipeline, set_path(mage_body, path, value))
    assert record["event_id"] != SEED_EVENT_ID
    assert record["event_id"] == expected_event_id(
        record["shop"],
        record["customer"]["shopify_customer_id"],
        record["occurred_at"],
        record["points_redeemed"],
        record["reward"]["id"],
        record["reward"]["discount_code"],
    )


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("data.email", "someone.else@example.com"),
        ("data.reward_name", "$20 off"),
        ("data.points_balance", 0),
    ],
)
def test_event_id_ignores_non_identifying_fields(pipeline, mage_body, path, value):
    assert accept(pipeline, set_path(mage_body, path, value))["event_id"] == SEED_EVENT_ID


def test_event_id_hashes_the_exact_epoch_millis(pipeline, mage_body):
    record = accept(pipeline, set_path(mage_body, "timestamp", "2004-07-25T11:49:27.498Z"))
    assert record["event_id"] == expected_event_id(
        "my-store",
        "6789012345",
        datetime(2004, 7, 25, 11, 49, 27, 498000, tzinfo=UTC),
        500,
        "clrew456def",
        "MAGE-A1B2C3",
    )


# --- drift and optional values ----------------------------------------------------------


def test_email_is_trimmed_and_lower_cased(pipeline, mage_body):
    record = accept(pipeline, set_path(mage_body, "data.email", "  Jane.Doe@Example.COM "))
    assert record["customer"]["email"] == "jane.doe@example.com"
    assert record["customer"]["email_sha256"] == hashlib.sha256(b"jane.doe@example.com").hexdigest()


@pytest.mark.parametrize("email", [None, "", "   "])
def test_absent_email(pipeline, mage_body, email):
    record = accept(pipeline, set_path(mage_body, "data.email", email))
    assert record["customer"]["email"] is None
    assert record["customer"]["email_sha256"] is None


def test_missing_optional_fields(pipeline, mage_body):
    for path in ("shop", "data.email", "data.points_balance", "data.reward_id"):
        delete_path(mage_body, path)
    delete_path(mage_body, "data.discount_code")
    record = accept(pipeline, mage_body)
    assert record["shop"] is None
    assert record["customer"]["email"] is None
    assert record["points_balance_after"] is None
    assert record["reward"]["id"] is None
    assert record["reward"]["discount_code"] is None
    assert record["reward"]["name"] == "$10 off"


def test_numbers_as_strings(pipeline, mage_body):
    set_path(mage_body, "data.points_redeemed", "500")
    set_path(mage_body, "data.points_balance", "200")
    record = accept(pipeline, mage_body)
    assert record["points_redeemed"] == 500
    assert record["points_balance_after"] == 200


def test_numeric_ids(pipeline, mage_body):
    set_path(mage_body, "data.shopify_customer_id", 9876543210987)
    set_path(mage_body, "data.reward_id", 456)
    record = accept(pipeline, mage_body)
    assert record["customer"]["shopify_customer_id"] == "9876543210987"
    assert record["reward"]["id"] == "456"


def test_long_customer_id_string_kept_exact(pipeline, mage_body):
    record = accept(pipeline, set_path(mage_body, "data.shopify_customer_id", "9007199254740993"))
    assert record["customer"]["shopify_customer_id"] == "9007199254740993"


def test_unknown_extra_fields_are_accepted(pipeline, mage_body):
    mage_body["api_version"] = "2026-01"
    mage_body["data"]["tier"] = {"name": "Gold", "multiplier": 1.5}
    mage_body["data"]["tags"] = ["vip", None]
    record = accept(pipeline, mage_body)
    assert record["event_id"] == SEED_EVENT_ID


def test_points_zero_is_accepted(pipeline, mage_body):
    assert accept(pipeline, set_path(mage_body, "data.points_redeemed", 0))["points_redeemed"] == 0


# --- recognition and event types --------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [("User-Agent", b"MageLoyalty-Webhook/1.0")],
        [("user-agent", b"mageloyalty-webhook/2.3")],
        [("X-Webhook-Event", b"points.redeemed")],
        [("x-webhook-signature", b"sha256=00")],
    ],
)
def test_recognised_by_header_without_body_hints(pipeline, headers):
    # {} has neither `event` nor `data`: only the header says Mage Loyalty.
    outcome = pipeline.process(raw_record({}, headers))
    assert isinstance(outcome, Rejected)
    assert outcome.provider == "mage_loyalty"


def test_recognised_by_body_alone(pipeline):
    assert accept(pipeline, payloads.mage_seed_bytes())["provider"] == "mage_loyalty"


@pytest.mark.parametrize(
    "event", ["points.earned", "customer.tier_upgrade", "customer.tier_downgrade", "x.y"]
)
def test_other_events_are_ignored(pipeline, event):
    body = {
        "event": event,
        "shop": "my-store",
        "timestamp": "2026-02-18T12:00:00.000Z",
        "data": {"shopify_customer_id": "6789012345", "tier": "Gold"},
    }
    outcome = pipeline.process(raw_record(body, mage_headers(dumps(body), event=event)))
    assert outcome == Ignored(provider="mage_loyalty", event_type=event)
    assert outcome.reason == "not_a_redemption"


def test_body_event_wins_over_the_header(pipeline, mage_body):
    # The body is signed and the header is not.
    headers = [("X-Webhook-Event", b"points.earned")]
    assert accept(pipeline, mage_body, headers)["provider_event_type"] == "points.redeemed"
    mage_body["event"] = "points.earned"
    headers = [("X-Webhook-Event", b"points.redeemed")]
    outcome = pipeline.process(raw_record(mage_body, headers))
    assert outcome == Ignored(provider="mage_loyalty", event_type="points.earned")


def test_header_event_used_when_the_body_has_none(pipeline):
    body = {"shop": "my-store", "data": {}}
    outcome = pipeline.process(raw_record(body, [("X-Webhook-Event", b"customer.tier_upgrade")]))
    assert outcome == Ignored(provider="mage_loyalty", event_type="customer.tier_upgrade")


def test_redemption_named_only_by_header_still_needs_the_body_event(pipeline, mage_body):
    delete_path(mage_body, "event")
    outcome = reject(pipeline, mage_body, [("X-Webhook-Event", b"points.redeemed")])
    assert outcome.reason == "schema_violation"
    assert outcome.field == "event"


def test_no_event_anywhere_is_unknown_event_type(pipeline):
    outcome = reject(pipeline, {"shop": "my-store"}, [("User-Agent", b"MageLoyalty-Webhook/1.0")])
    assert outcome.reason == "unknown_event_type"
    assert outcome.provider == "mage_loyalty"
    assert "mage_loyalty" in outcome.message
    assert outcome.field is None


# --- signatures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signed_pipeline() -> Pipeline:
    return Pipeline(secrets={"mage_loyalty": (SECRET,)})


def test_signature_over_timestamp_and_body_verifies(signed_pipeline):
    body = payloads.mage_seed_bytes()
    record = accept(signed_pipeline, body, mage_headers(body, SECRET))
    assert record["metadata"]["signature_verified"] is True


def test_signature_verified_is_null_without_a_secret(pipeline):
    body = payloads.mage_seed_bytes()
    headers = mage_headers(body, "whatever-secret")
    assert accept(pipeline, body, headers)["metadata"]["signature_verified"] is None
    # Not even a bad signature is looked at when no secret is configured.
    bad = [*mage_headers(body), ("X-Webhook-Signature", b"sha256=deadbeef")]
    assert accept(pipeline, body, bad)["metadata"]["signature_verified"] is None


def test_secret_of_the_other_provider_does_not_apply():
    rivo_only = Pipeline(secrets={"rivo": ("rivo-secret",)})
    body = payloads.mage_seed_bytes()
    assert accept(rivo_only, body)["metadata"]["signature_verified"] is None


def test_signature_header_names_are_case_insensitive(signed_pipeline):
    body = payloads.mage_seed_bytes()
    signature = mage_signature(SECRET, MAGE_SIGNED_AT, body).encode()
    for sig_name, ts_name in [
        ("x-webhook-signature", "x-webhook-timestamp"),
        ("X-WEBHOOK-SIGNATURE", "X-WEBHOOK-TIMESTAMP"),
        ("X-Webhook-Signature", "x-WeBhOoK-tImEsTaMp"),
    ]:
        headers = [(ts_name, MAGE_SIGNED_AT.encode()), (sig_name, signature)]
        assert accept(signed_pipeline, body, headers)["metadata"]["signature_verified"] is True


def test_signature_hex_case_and_prefix_case_do_not_matter(signed_pipeline):
    body = payloads.mage_seed_bytes()
    hex_digest = mage_signature(SECRET, MAGE_SIGNED_AT, body).removeprefix("sha256=")
    for presented in (f"SHA256={hex_digest.upper()}", f" sha256={hex_digest} "):
        headers = [("X-Webhook-Timestamp", MAGE_SIGNED_AT.encode())]
        headers.append(("X-Webhook-Signature", presented.encode()))
        assert accept(signed_pipeline, body, headers)["metadata"]["signature_verified"] is True


def test_any_of_several_secrets_verifies():
    rotating = Pipeline(secrets={"mage_loyalty": ("old-secret", "new-secret")})
    body = payloads.mage_seed_bytes()
    for secret in ("old-secret", "new-secret"):
        record = accept(rotating, body, mage_headers(body, secret))
        assert record["metadata"]["signature_verified"] is True
    outcome = reject(rotating, body, mage_headers(body, "retired-secret"))
    assert outcome.reason == "signature_invalid"


def test_missing_signature_header(signed_pipeline):
    body = payloads.mage_seed_bytes()
    outcome = reject(signed_pipeline, body, mage_headers(body))
    assert outcome.reason == "signature_missing"
    assert outcome.field == "X-Webhook-Signature"
    assert "X-Webhook-Signature" in outcome.message
    assert outcome.provider == "mage_loyalty"


def test_missing_timestamp_header(signed_pipeline):
    body = payloads.mage_seed_bytes()
    headers = [
        (name, value) for name, value in mage_headers(body, SECRET) if name != "X-Webhook-Timestamp"
    ]
    outcome = reject(signed_pipeline, body, headers)
    assert outcome.reason == "signature_missing"
    assert outcome.field == "X-Webhook-Timestamp"
    assert "X-Webhook-Timestamp" in outcome.message


def _signed_with(body: bytes, presented: str):
    return [*mage_headers(body), ("X-Webhook-Signature", presented.encode())]


def _with_timestamp(headers, timestamp: str):
    return [
        (name, timestamp.encode() if name == "X-Webhook-Timestamp" else value)
        for name, value in headers
    ]


SEED = payloads.mage_seed_bytes()
BODY_ONLY_HMAC = hmac.new(SECRET.encode(), SEED, hashlib.sha256).hexdigest()

# (body presented, headers presented): each is one way a signature fails to match.
INVALID_SIGNATURES = {
    "wrong secret": (SEED, mage_headers(SEED, "not-the-secret")),
    "body changed after signing": (SEED.replace(b"500", b"5000"), mage_headers(SEED, SECRET)),
    "body re-serialised": (dumps(json.loads(SEED)), mage_headers(SEED, SECRET)),
    "timestamp header changed": (
        SEED,
        _with_timestamp(mage_headers(SEED, SECRET), "2026-02-18T12:00:02.000Z"),
    ),
    "body signed without the timestamp": (SEED, _signed_with(SEED, "sha256=" + BODY_ONLY_HMAC)),
    "not hex": (SEED, _signed_with(SEED, "sha256=zz")),
    "empty": (SEED, _signed_with(SEED, "")),
}


@pytest.mark.parametrize("case", list(INVALID_SIGNATURES))
def test_invalid_signatures(signed_pipeline, case):
    body, headers = INVALID_SIGNATURES[case]
    outcome = reject(signed_pipeline, body, headers)
    assert outcome.reason == "signature_invalid"
    assert outcome.field == "X-Webhook-Signature"
    assert "does not match" in outcome.message


def test_signature_is_checked_for_ignored_events_too(signed_pipeline):
    body = dumps({"event": "points.earned", "data": {}})
    assert reject(signed_pipeline, body, mage_headers(body)).reason == "signature_missing"
    outcome = signed_pipeline.process(raw_record(body, mage_headers(body, SECRET)))
    assert outcome == Ignored(provider="mage_loyalty", event_type="points.earned")


def test_verify_signature_directly():
    body = payloads.mage_seed_bytes()
    good = {
        "x-webhook-timestamp": MAGE_SIGNED_AT,
        "x-webhook-signature": mage_signature(SECRET, MAGE_SIGNED_AT, body),
    }
    assert mage_loyalty.PROVIDER.verify_signature((SECRET,), good, body) is None
    with pytest.raises(SignatureInvalid):
        mage_loyalty.PROVIDER.verify_signature(("other",), good, body)
    with pytest.raises(SignatureMissing):
        mage_loyalty.PROVIDER.verify_signature((SECRET,), {}, body)


# --- rejections after recognition ---------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        ("data.points_redeemed", 5.5, "data.points_redeemed", "got number"),
        ("data.points_redeemed", None, "data.points_redeemed", "missing or null"),
        ("data.shopify_customer_id", None, "data.shopify_customer_id", "missing or null"),
        ("data.shopify_customer_id", True, "data.shopify_customer_id", "got boolean"),
        ("data.reward_name", 10, "data.reward_name", "got integer"),
        ("data.email", ["jane@example.com"], "data.email", "got array"),
        ("timestamp", 1771416000, "timestamp", "got integer"),
        ("shop", {"domain": "x"}, "shop", "got object"),
        ("data", [1, 2], "data", "got array"),
    ],
)
def test_schema_violations_name_the_field(pipeline, mage_body, path, value, field, words):
    outcome = reject(pipeline, set_path(mage_body, path, value))
    assert outcome.reason == "schema_violation"
    assert outcome.field == field
    assert outcome.message.startswith(f"{field}: ")
    assert words in outcome.message
    assert outcome.provider == "mage_loyalty"
    assert outcome.event_type == "points.redeemed"


@pytest.mark.parametrize("path", ["timestamp", "data.reward_name", "data.points_redeemed"])
def test_missing_required_field(pipeline, mage_body, path):
    outcome = reject(pipeline, delete_path(mage_body, path))
    assert outcome.reason == "schema_violation"
    assert outcome.field == path
    assert outcome.message == f"{path}: required field is missing or null"


def test_missing_data_with_a_mage_header(pipeline, mage_body):
    outcome = reject(
        pipeline, delete_path(mage_body, "data"), [("User-Agent", b"MageLoyalty-Webhook/1.0")]
    )
    assert outcome.reason == "schema_violation"
    assert outcome.field == "data"


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        ("timestamp", "yesterday at noon", "timestamp", "not an ISO 8601 timestamp"),
        ("timestamp", "2026-02-30T12:00:00Z", "timestamp", "not an ISO 8601 timestamp"),
        ("data.points_redeemed", -500, "data.points_redeemed", "must not be negative"),
        ("data.points_redeemed", "-500", "data.points_redeemed", "must not be negative"),
        ("data.points_redeemed", "5.5", "data.points_redeemed", "whole number"),
        ("data.points_redeemed", str(2**63), "data.points_redeemed", "too large"),
        ("data.points_balance", "\u0661", "data.points_balance", "whole number"),
        ("data.reward_name", "x" * 1025, "data.reward_name", "longer than 1024 characters"),
        ("data.shopify_customer_id", "jane", "data.shopify_customer_id", "not a Shopify"),
        ("data.shopify_customer_id", "0", "data.shopify_customer_id", "not a Shopify"),
        ("data.shopify_customer_id", -6789012345, "data.shopify_customer_id", "positive"),
    ],
)
def test_normalization_errors(pipeline, mage_body, path, value, field, words):
    outcome = reject(pipeline, set_path(mage_body, path, value))
    assert outcome.reason == "normalization_error"
    assert outcome.field == field
    assert outcome.message.startswith(f"{field}: ")
    assert words in outcome.message
    # Messages end up in DLQ headers and logs: they never quote the value.
    assert str(value) not in outcome.message.removeprefix(f"{field}: ")


@pytest.mark.parametrize("balance", [-1, "-250", 0])
def test_a_negative_balance_is_accepted(pipeline, mage_body, balance):
    # Points earned on a refunded order are clawed back: a balance may go below zero.
    record = accept(pipeline, set_path(mage_body, "data.points_balance", balance))
    assert record["points_balance_after"] == int(balance)


def test_the_reward_name_at_its_bound_is_accepted(pipeline, mage_body):
    name = "n" * 1024
    record = accept(pipeline, set_path(mage_body, "data.reward_name", name))
    assert record["reward"]["name"] == record["reward"]["label"] == name


def test_huge_points_string_is_rejected_not_raised(pipeline, mage_body):
    outcome = pipeline.process(raw_record(set_path(mage_body, "data.points_redeemed", "9" * 5000)))
    assert isinstance(outcome, Rejected)
    assert outcome.reason == "normalization_error"


def test_timestamp_at_the_edge_of_the_calendar_is_rejected_not_raised(pipeline, mage_body):
    body = set_path(mage_body, "timestamp", "0001-01-01T00:00:00+01:00")
    outcome = pipeline.process(raw_record(body))
    assert isinstance(outcome, Rejected)
    assert outcome.reason == "normalization_error"
    assert outcome.field == "timestamp"


def test_reward_name_is_trimmed_like_other_text(pipeline, mage_body):
    reward = accept(pipeline, set_path(mage_body, "data.reward_name", "  $10 off "))["reward"]
    assert reward["name"] == "$10 off"
    assert reward["label"] == "$10 off"


def test_blank_reward_name_is_a_normalization_error(pipeline, mage_body):
    outcome = reject(pipeline, set_path(mage_body, "data.reward_name", "   "))
    assert outcome.reason == "normalization_error"
    assert outcome.field == "data.reward_name"
