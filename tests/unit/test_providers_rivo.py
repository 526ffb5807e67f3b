"""Rivo `points_redemption/created`: recognition, event types, both signature schemes,
normalisation and the drift the contract lists."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from consumer.errors import SignatureInvalid, SignatureMissing
from consumer.pipeline import Pipeline
from consumer.providers import rivo
from consumer.records import Accepted, Ignored, Rejected
from tests.helpers import payloads
from tests.helpers.payloads import delete_path, dumps, raw_record, set_path
from tests.helpers.signing import (
    RIVO_SIGNED_AT,
    RIVO_WEBHOOK_ID,
    rivo_documented_headers,
    rivo_documented_signature,
    rivo_standard_signature,
    rivo_wire_headers,
)

SECRET = "rivo-secret-token"
REDEMPTION = "points_redemption/created"
EXPIRY_NOTICE = "notification/reward_expiry_last_chance"

# The Standard Webhooks specification's published test vector.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = "1614265330"
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def accept(pipeline: Pipeline, body, headers=()) -> dict:
    return payloads.accept(pipeline, body, headers, provider="rivo")


reject = payloads.reject


# --- the seed payload, field by field ---------------------------------------------------


def test_seed_payload_every_contract_field(pipeline, fixed_now):
    outcome = pipeline.process(raw_record(payloads.rivo_seed_bytes(), partition=0, offset=0))

    assert isinstance(outcome, Accepted)
    assert outcome.provider == "rivo"
    assert outcome.event_type == REDEMPTION
    assert outcome.key == b"9876543210987"
    assert outcome.event_id == "rivo:1234567"
    # The seed's email is "[email protected]" with a no-break space, as the published example
    # has it (an obfuscated address); it is normalised like any other text.
    email = "[email\u00a0protected]"
    assert outcome.record == {
        "event_id": "rivo:1234567",
        "provider": "rivo",
        "provider_event_type": REDEMPTION,
        "provider_event_id": "1234567",
        "shop": None,
        "occurred_at": datetime(2025, 4, 25, 15, 8, 36, 223000, tzinfo=UTC),
        "source": "points",
        "points_redeemed": 500,
        "credits_redeemed": "0.00",
        "points_balance_after": 27,
        "customer": {
            "shopify_customer_id": "9876543210987",
            "email": email,
            "email_sha256": hashlib.sha256(email.encode()).hexdigest(),
            "first_name": "John",
            "last_name": "Doe",
            "loyalty_status": "member",
            "accepts_marketing": False,
        },
        "reward": {
            "id": "789012",
            "name": "$5 off coupon",
            "label": "$5 off coupon",
            "type": "fixed_amount",
            "discount_code": "BAL-abc123def456",
            "expires_at": datetime(2025, 5, 25, 15, 8, 36, 223000, tzinfo=UTC),
            "used_at": None,
            "refunded_at": None,
        },
        "metadata": {
            "source_topic": "loyalty.webhooks.raw",
            "source_partition": 0,
            "source_offset": 0,
            "processed_at": fixed_now,
            "signature_verified": None,
            "consumer_version": "9.9.9-test",
        },
    }


def test_event_id_is_the_rivo_id(pipeline, rivo_body):
    assert accept(pipeline, set_path(rivo_body, "id", "1234567"))["event_id"] == "rivo:1234567"
    record = accept(pipeline, payloads.dumps_differently(rivo_body))
    assert record["event_id"] == "rivo:1234567"
    assert record["provider_event_id"] == "1234567"


# --- event type precedence ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "body_type", "customer_type", "expected"),
    [
        # The header wins, even over a wrong type in the body.
        (REDEMPTION, "points_event/created", "points_event/created", REDEMPTION),
        (EXPIRY_NOTICE, REDEMPTION, REDEMPTION, EXPIRY_NOTICE),
        ("points_event/created", None, REDEMPTION, "points_event/created"),
        # Then the body's event_type.
        (None, REDEMPTION, EXPIRY_NOTICE, REDEMPTION),
        (None, EXPIRY_NOTICE, REDEMPTION, EXPIRY_NOTICE),
        # Then customer.event_type.
        (None, None, REDEMPTION, REDEMPTION),
        (None, None, EXPIRY_NOTICE, EXPIRY_NOTICE),
        # Blank values do not count.
        ("", "", REDEMPTION, REDEMPTION),
    ],
)
def test_event_type_precedence(pipeline, rivo_body, header, body_type, customer_type, expected):
    if body_type is not None:
        rivo_body["event_type"] = body_type
    rivo_body["customer"]["event_type"] = customer_type
    headers = [] if header is None else [("rivo-webhook-topic", header.encode())]
    outcome = pipeline.process(raw_record(rivo_body, headers))
    if expected == REDEMPTION:
        assert isinstance(outcome, Accepted)
        assert outcome.record["provider_event_type"] == REDEMPTION
    else:
        assert outcome == Ignored(provider="rivo", event_type=expected)


def test_topic_header_name_is_case_insensitive(pipeline, rivo_body):
    outcome = pipeline.process(
        raw_record(rivo_body, [("Rivo-Webhook-Topic", EXPIRY_NOTICE.encode())])
    )
    assert outcome == Ignored(provider="rivo", event_type=EXPIRY_NOTICE)


def test_expiry_notice_with_the_redemptions_exact_shape_is_ignored(pipeline):
    # Same bytes as a redemption; only the topic header tells them apart.
    body = payloads.rivo_seed_bytes()
    outcome = pipeline.process(raw_record(body, rivo_wire_headers(body, topic=EXPIRY_NOTICE)))
    assert outcome == Ignored(provider="rivo", event_type=EXPIRY_NOTICE)
    assert outcome.reason == "not_a_redemption"


def test_points_event_with_no_type_in_the_body_is_ignored(pipeline):
    body = dumps(
        {
            "id": 5551212,
            "points_amount": 100,
            "created_at": "2025-04-25T15:08:36.223Z",
            "customer": {"id": 9876543210987, "email": "john@example.com", "points_tally": 127},
        }
    )
    outcome = pipeline.process(
        raw_record(body, rivo_wire_headers(body, topic="points_event/created"))
    )
    assert outcome == Ignored(provider="rivo", event_type="points_event/created")


@pytest.mark.parametrize(
    "topic",
    [
        "points_event/created",
        "customer_vip_tier/upgraded",
        "customer_vip_tier/updated",
        "customer_vip_tier/downgraded",
        "referral_invite/created",
        "referral/completed",
        "notification/points_expiry_warning",
        "notification/points_expiry_last_chance",
        EXPIRY_NOTICE,
    ],
)
def test_other_topics_are_ignored(pipeline, topic):
    body = dumps({"id": 1, "customer": {"id": 9876543210987}})
    outcome = pipeline.process(raw_record(body, rivo_wire_headers(body, topic=topic)))
    assert outcome == Ignored(provider="rivo", event_type=topic)


def test_recognised_by_body_event_type_alone(pipeline, rivo_body):
    rivo_body["event_type"] = REDEMPTION
    del rivo_body["customer"]["event_type"]
    assert accept(pipeline, rivo_body)["provider_event_type"] == REDEMPTION


def test_rivo_header_without_any_event_type(pipeline, rivo_body):
    del rivo_body["customer"]["event_type"]
    outcome = reject(pipeline, rivo_body, [("rivo-webhook-id", b"msg_1")])
    assert outcome.reason == "unknown_event_type"
    assert outcome.provider == "rivo"
    assert "rivo" in outcome.message
    assert outcome.event_type is None


# --- drift the contract lists ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("credits", "expected"),
    [
        ("25.5", "25.50"),
        ("0.0", "0.00"),
        ("25.50", "25.50"),
        (25.5, "25.50"),
        (0, "0.00"),
        ("10", "10.00"),
        ("25.505", "25.505"),
        (None, None),
    ],
)
def test_credits_amount_as_a_canonical_decimal(pipeline, rivo_body, credits, expected):
    record = accept(pipeline, set_path(rivo_body, "credits_amount", credits))
    assert record["credits_redeemed"] == expected


def test_credits_amount_absent(pipeline, rivo_body):
    assert accept(pipeline, delete_path(rivo_body, "credits_amount"))["credits_redeemed"] is None


def test_numbers_as_strings(pipeline, rivo_body):
    set_path(rivo_body, "points_amount", "500")
    set_path(rivo_body, "customer.points_tally", "27")
    set_path(rivo_body, "customer.credits_tally", "25.50")
    record = accept(pipeline, rivo_body)
    assert record["points_redeemed"] == 500
    assert record["points_balance_after"] == 27


def test_expires_at_null(pipeline, rivo_body):
    assert accept(pipeline, set_path(rivo_body, "expires_at", None))["reward"]["expires_at"] is None


def test_used_and_refunded_timestamps_are_read_as_utc(pipeline, rivo_body):
    set_path(rivo_body, "used_at", "2025-04-26T10:00:00+02:00")
    set_path(rivo_body, "refunded_at", "2025-04-27T08:30:00.500Z")
    reward = accept(pipeline, rivo_body)["reward"]
    assert reward["used_at"] == datetime(2025, 4, 26, 8, 0, tzinfo=UTC)
    assert reward["refunded_at"] == datetime(2025, 4, 27, 8, 30, 0, 500000, tzinfo=UTC)


def test_unknown_extra_fields_are_accepted(pipeline, rivo_body):
    rivo_body["brand_new_field"] = {"nested": [1, "two", None]}
    rivo_body["reward"]["product_id"] = None
    rivo_body["reward"]["variant_ids"] = "1,2,3"
    rivo_body["reward"]["terms_of_service"]["new_term"] = True
    rivo_body["customer"]["shop_id"] = 4242
    rivo_body["customer"]["shopify_tags"] = ["vip"]
    record = accept(pipeline, rivo_body)
    assert record["event_id"] == "rivo:1234567"


@pytest.mark.parametrize(
    ("customer_id", "expected"),
    [
        (9876543210987, "9876543210987"),
        ("9876543210987", "9876543210987"),
        (9007199254740993, "9007199254740993"),  # 2**53 + 1: a float would lose it
        (9223372036854775807, "9223372036854775807"),
        ("gid://shopify/Customer/9876543210987", "9876543210987"),
    ],
)
def test_customer_id_kept_exact(pipeline, rivo_body, customer_id, expected):
    outcome = pipeline.process(raw_record(set_path(rivo_body, "customer.id", customer_id)))
    assert isinstance(outcome, Accepted)
    assert outcome.record["customer"]["shopify_customer_id"] == expected
    assert outcome.key == expected.encode()


def test_customer_id_from_the_raw_bytes_never_through_a_float(pipeline):
    body = payloads.rivo_seed_bytes().replace(b"9876543210987", b"1234567890123456789")
    record = accept(pipeline, body)
    assert record["customer"]["shopify_customer_id"] == "1234567890123456789"


@pytest.mark.parametrize(
    ("reward_changes", "top_level_reward_id", "expected"),
    [
        ({}, 789012, "789012"),
        ({"id": None}, 111, "111"),
        ({"id": ""}, 111, "111"),
        ({"id": "rw-9"}, 111, "rw-9"),
        ({"id": None}, None, None),
        ({"id": None}, "abc", "abc"),
    ],
)
def test_reward_id_falls_back_to_reward_id(
    pipeline, rivo_body, reward_changes, top_level_reward_id, expected
):
    rivo_body["reward"].update(reward_changes)
    rivo_body["reward_id"] = top_level_reward_id
    assert accept(pipeline, rivo_body)["reward"]["id"] == expected


def test_reward_id_without_a_reward_object(pipeline, rivo_body):
    rivo_body["reward"] = None
    rivo_body["reward_id"] = 789012
    reward = accept(pipeline, rivo_body)["reward"]
    assert reward["id"] == "789012"
    assert reward["name"] == "$5 off coupon"
    assert reward["type"] is None


def test_reward_name_falls_back_to_top_level_name(pipeline, rivo_body):
    rivo_body["reward"]["name"] = None
    rivo_body["name"] = "Shown name"
    reward = accept(pipeline, rivo_body)["reward"]
    assert reward["name"] == "Shown name"
    assert reward["label"] == "Shown name"


def test_reward_name_and_label_differ(pipeline, rivo_body):
    rivo_body["reward"]["name"] = "Internal name"
    rivo_body["name"] = "What the customer saw"
    reward = accept(pipeline, rivo_body)["reward"]
    assert reward["name"] == "Internal name"
    assert reward["label"] == "What the customer saw"


def test_label_is_null_without_top_level_name(pipeline, rivo_body):
    reward = accept(pipeline, delete_path(rivo_body, "name"))["reward"]
    assert reward["name"] == "$5 off coupon"
    assert reward["label"] is None


def test_no_reward_name_anywhere(pipeline, rivo_body):
    rivo_body["reward"]["name"] = "  "
    rivo_body["name"] = None
    outcome = reject(pipeline, rivo_body)
    assert outcome.reason == "normalization_error"
    assert outcome.field == "reward.name"
    assert "reward.name" in outcome.message and "name" in outcome.message


@pytest.mark.parametrize(
    ("source", "reward_source", "expected"),
    [
        ("points", "points", "points"),
        ("credits", "points", "credits"),
        (None, "credits", "credits"),
        ("", "points", "points"),
    ],
)
def test_source_falls_back_to_reward_source(pipeline, rivo_body, source, reward_source, expected):
    rivo_body["source"] = source
    rivo_body["reward"]["source"] = reward_source
    assert accept(pipeline, rivo_body)["source"] == expected


def test_source_missing_everywhere(pipeline, rivo_body):
    delete_path(rivo_body, "source")
    delete_path(rivo_body, "reward.source")
    outcome = reject(pipeline, rivo_body)
    assert outcome.reason == "normalization_error"
    assert outcome.field == "source"


@pytest.mark.parametrize(
    ("source", "reward_source", "field"),
    [("gift_card", "points", "source"), (None, "cash", "reward.source")],
)
def test_source_not_points_or_credits(pipeline, rivo_body, source, reward_source, field):
    rivo_body["source"] = source
    rivo_body["reward"]["source"] = reward_source
    outcome = reject(pipeline, rivo_body)
    assert outcome.reason == "normalization_error"
    assert outcome.field == field
    assert outcome.message == f"{field}: expected points or credits"


@pytest.mark.parametrize(
    ("reward_type", "expected"),
    [
        ("fixed_amount", "fixed_amount"),
        ("percentage", "percentage"),
        ("free_shipping", "free_shipping"),
        ("free_product", "free_product"),
        ("store_credit", "other"),
        ("Fixed_Amount", "other"),
        (None, None),
    ],
)
def test_reward_type_mapping(pipeline, rivo_body, reward_type, expected):
    assert (
        accept(pipeline, set_path(rivo_body, "reward.reward_type", reward_type))["reward"]["type"]
        == expected
    )


def test_reward_type_absent(pipeline, rivo_body):
    assert accept(pipeline, delete_path(rivo_body, "reward.reward_type"))["reward"]["type"] is None


@pytest.mark.parametrize(
    ("headers", "domain", "expected"),
    [
        (
            [("X-Shop-Domain", b"header.myshopify.com")],
            "body.myshopify.com",
            "header.myshopify.com",
        ),
        ([("x-shop-domain", b"header.myshopify.com")], None, "header.myshopify.com"),
        ([], "body.myshopify.com", "body.myshopify.com"),
        ([("X-Shop-Domain", b"  ")], "body.myshopify.com", "body.myshopify.com"),
        ([], None, None),
    ],
)
def test_shop_from_header_then_customer_domain(pipeline, rivo_body, headers, domain, expected):
    if domain is not None:
        rivo_body["customer"]["shopify_domain"] = domain
    assert accept(pipeline, rivo_body, headers)["shop"] == expected


def test_customer_fields(pipeline, rivo_body):
    customer = rivo_body["customer"]
    customer.update(
        email="  John.Doe@Example.COM ",
        first_name=" John ",
        last_name=None,
        loyalty_status="vip",
        accepts_marketing=True,
    )
    record = accept(pipeline, rivo_body)["customer"]
    assert record == {
        "shopify_customer_id": "9876543210987",
        "email": "john.doe@example.com",
        "email_sha256": hashlib.sha256(b"john.doe@example.com").hexdigest(),
        "first_name": "John",
        "last_name": None,
        "loyalty_status": "vip",
        "accepts_marketing": True,
    }


def test_optional_customer_fields_absent(pipeline, rivo_body):
    rivo_body["customer"] = {"id": 9876543210987, "event_type": REDEMPTION}
    record = accept(pipeline, rivo_body)
    assert record["customer"] == {
        "shopify_customer_id": "9876543210987",
        "email": None,
        "email_sha256": None,
        "first_name": None,
        "last_name": None,
        "loyalty_status": None,
        "accepts_marketing": None,
    }
    assert record["points_balance_after"] is None


# --- signatures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signed_pipeline() -> Pipeline:
    return Pipeline(secrets={"rivo": (SECRET,)})


def test_helper_reproduces_the_standard_webhooks_vector():
    signature = rivo_standard_signature(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY)
    assert signature == VECTOR_SIGNATURE


def test_standard_webhooks_vector_verifies_with_a_whsec_secret():
    headers = {
        "rivo-webhook-id": VECTOR_ID,
        "rivo-webhook-timestamp": VECTOR_TIMESTAMP,
        "rivo-webhook-signature": VECTOR_SIGNATURE,
    }
    assert rivo.PROVIDER.verify_signature((VECTOR_SECRET,), headers, VECTOR_BODY) is None
    with pytest.raises(SignatureInvalid):
        rivo.PROVIDER.verify_signature((VECTOR_SECRET,), headers, VECTOR_BODY + b" ")


def test_standard_webhooks_vector_through_the_pipeline():
    checking = Pipeline(secrets={"rivo": (VECTOR_SECRET,)})
    headers = [
        ("rivo-webhook-id", VECTOR_ID.encode()),
        ("rivo-webhook-timestamp", VECTOR_TIMESTAMP.encode()),
        ("rivo-webhook-signature", VECTOR_SIGNATURE.encode()),
        ("rivo-webhook-topic", b"points_event/created"),
    ]
    outcome = checking.process(raw_record(VECTOR_BODY, headers))
    assert outcome == Ignored(provider="rivo", event_type="points_event/created")


def test_documented_signature_verifies(signed_pipeline):
    body = payloads.rivo_seed_bytes()
    record = accept(signed_pipeline, body, rivo_documented_headers(body, SECRET))
    assert record["metadata"]["signature_verified"] is True


def test_wire_signature_verifies(signed_pipeline):
    body = payloads.rivo_seed_bytes()
    record = accept(signed_pipeline, body, rivo_wire_headers(body, SECRET))
    assert record["metadata"]["signature_verified"] is True


def test_wire_signature_with_a_whsec_secret():
    secret = "whsec_" + "c2VjcmV0LWtleS1ieXRlcy0xMjM0NTY3ODkwYWJjZGVm"
    checking = Pipeline(secrets={"rivo": (secret,)})
    body = payloads.rivo_seed_bytes()
    record = accept(checking, body, rivo_wire_headers(body, secret))
    assert record["metadata"]["signature_verified"] is True
    # Keyed with the secret as written rather than its decoded bytes, it does not verify.
    raw_key_signature = rivo_standard_signature(
        "raw:" + secret, RIVO_WEBHOOK_ID, RIVO_SIGNED_AT, body
    )
    headers = [*rivo_wire_headers(body), ("rivo-webhook-signature", raw_key_signature.encode())]
    assert reject(checking, body, headers).reason == "signature_invalid"


def test_several_space_separated_signatures(signed_pipeline):
    body = payloads.rivo_seed_bytes()
    good = rivo_standard_signature(SECRET, RIVO_WEBHOOK_ID, RIVO_SIGNED_AT, body)
    other = rivo_standard_signature("previous-secret", RIVO_WEBHOOK_ID, RIVO_SIGNED_AT, body)
    for presented in (f"{other} {good}", f"v1,bm9wZQ== {good}", f"{good} {other}"):
        headers = [*rivo_wire_headers(body), ("rivo-webhook-signature", presented.encode())]
        assert accept(signed_pipeline, body, headers)["metadata"]["signature_verified"] is True
    headers = [
        *rivo_wire_headers(body),
        ("rivo-webhook-signature", f"{other} v1,bm9wZQ==".encode()),
    ]
    assert reject(signed_pipeline, body, headers).reason == "signature_invalid"


def test_only_v1_signatures_count(signed_pipeline):
    body = payloads.rivo_seed_bytes()
    good = rivo_standard_signature(SECRET, RIVO_WEBHOOK_ID, RIVO_SIGNED_AT, body)
    presented = good.replace("v1,", "v2,")
    headers = [*rivo_wire_headers(body), ("rivo-webhook-signature", presented.encode())]
    assert reject(signed_pipeline, body, headers).reason == "signature_invalid"


def test_any_of_several_secrets_verifies():
    rotating = Pipeline(secrets={"rivo": ("old-token", "new-token")})
    body = payloads.rivo_seed_bytes()
    for secret in ("old-token", "new-token"):
        assert accept(rotating, body, rivo_documented_headers(body, secret))
        assert accept(rotating, body, rivo_wire_headers(body, secret))
    outcome = reject(rotating, body, rivo_documented_headers(body, "retired-token"))
    assert outcome.reason == "signature_invalid"


def test_header_names_are_case_insensitive(signed_pipeline):
    body = payloads.rivo_seed_bytes()
    documented = rivo_documented_signature(SECRET, body).encode()
    assert accept(signed_pipeline, body, [("RIVO-SIGNATURE", documented)])
    assert accept(signed_pipeline, body, [("rivo-signature", documented)])
    shouted = [(name.upper(), value) for name, value in rivo_wire_headers(body, SECRET)]
    assert accept(signed_pipeline, body, shouted)["metadata"]["signature_verified"] is True


def test_a_wrong_documented_signature_does_not_hide_a_right_wire_one(signed_pipeline):
    body = payloads.rivo_seed_bytes()
    headers = [*rivo_wire_headers(body, SECRET), ("Rivo-Signature", b"d3Jvbmc=")]
    assert accept(signed_pipeline, body, headers)["metadata"]["signature_verified"] is True


def test_signature_missing(signed_pipeline):
    body = payloads.rivo_seed_bytes()
    outcome = reject(signed_pipeline, body, rivo_wire_headers(body))
    assert outcome.reason == "signature_missing"
    assert outcome.field == "Rivo-Signature"
    assert "Rivo-Signature" in outcome.message and "rivo-webhook-signature" in outcome.message
    assert outcome.provider == "rivo"


def test_documented_signature_invalid(signed_pipeline):
    body = payloads.rivo_seed_bytes()
    for headers in (
        rivo_documented_headers(body, "wrong-token"),
        rivo_documented_headers(body.replace(b"500", b"501"), SECRET),
        [("Rivo-Signature", rivo_documented_signature(SECRET, body).encode() + b"x")],
        [("Rivo-Signature", b"")],
    ):
        outcome = reject(signed_pipeline, body, headers)
        assert outcome.reason == "signature_invalid"
        assert outcome.field == "Rivo-Signature"


@pytest.mark.parametrize(
    "change",
    ["secret", "webhook id", "timestamp", "body"],
)
def test_wire_signature_invalid(signed_pipeline, change):
    body = payloads.rivo_seed_bytes()
    signed_body = body.replace(b"500", b"501") if change == "body" else body
    headers = rivo_wire_headers(signed_body, "wrong-token" if change == "secret" else SECRET)
    replaced = {
        "webhook id": ("rivo-webhook-id", b"msg_other"),
        "timestamp": ("rivo-webhook-timestamp", b"1745593717"),
    }
    if change in replaced:
        name, value = replaced[change]
        headers = [(n, value if n == name else v) for n, v in headers]
    outcome = reject(signed_pipeline, body, headers)
    assert outcome.reason == "signature_invalid"
    assert outcome.field == "rivo-webhook-signature"
    assert "does not match" in outcome.message or "matches" in outcome.message


@pytest.mark.parametrize("dropped", ["rivo-webhook-id", "rivo-webhook-timestamp"])
def test_wire_signature_without_a_signed_string_header_is_missing(signed_pipeline, dropped):
    # Like Mage's X-Webhook-Timestamp: a header the signed string needs is missing, so
    # the signature cannot be checked at all.
    body = payloads.rivo_seed_bytes()
    headers = [(n, v) for n, v in rivo_wire_headers(body, SECRET) if n != dropped]
    outcome = reject(signed_pipeline, body, headers)
    assert outcome.reason == "signature_missing"
    assert outcome.field == dropped


def test_verify_signature_directly():
    body = payloads.rivo_seed_bytes()
    documented = {"rivo-signature": rivo_documented_signature(SECRET, body)}
    assert rivo.PROVIDER.verify_signature((SECRET,), documented, body) is None
    with pytest.raises(SignatureMissing):
        rivo.PROVIDER.verify_signature((SECRET,), {"rivo-webhook-topic": REDEMPTION}, body)
    with pytest.raises(SignatureInvalid):
        rivo.PROVIDER.verify_signature(("other",), documented, body)


def test_signature_verified_is_null_without_a_secret(pipeline):
    body = payloads.rivo_seed_bytes()
    headers = [("Rivo-Signature", b"not-even-base64")]
    assert accept(pipeline, body, headers)["metadata"]["signature_verified"] is None


# --- rejections after recognition -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        ("customer.id", None, "customer.id", "missing or null"),
        ("customer.id", 98765.4, "customer.id", "got number"),
        ("customer.id", True, "customer.id", "got boolean"),
        ("customer.id", 2**64, "customer.id", "got number"),
        ("id", 1.5, "id", "got number"),
        ("id", None, "id", "missing or null"),
        ("points_amount", [500], "points_amount", "got array"),
        ("applied_at", 1745593716, "applied_at", "got integer"),
        ("credits_amount", {"amount": 1}, "credits_amount", "got object"),
        ("customer.accepts_marketing", "yes", "customer.accepts_marketing", "got string"),
        ("customer.email", 42, "customer.email", "got integer"),
        ("customer", "9876543210987", "customer", "got string"),
        ("reward", [1], "reward", "got array"),
    ],
)
def test_schema_violations_name_the_field(pipeline, rivo_body, path, value, field, words):
    headers = [("rivo-webhook-topic", REDEMPTION.encode())]
    outcome = reject(pipeline, set_path(rivo_body, path, value), headers)
    assert outcome.reason == "schema_violation"
    assert outcome.field == field
    assert outcome.message.startswith(f"{field}: ")
    assert words in outcome.message
    assert outcome.provider == "rivo"
    assert outcome.event_type == REDEMPTION


@pytest.mark.parametrize("path", ["id", "points_amount", "applied_at", "customer", "customer.id"])
def test_missing_required_field(pipeline, rivo_body, path):
    headers = [("rivo-webhook-topic", REDEMPTION.encode())]
    outcome = reject(pipeline, delete_path(rivo_body, path), headers)
    assert outcome.reason == "schema_violation"
    assert outcome.field == path
    assert outcome.message == f"{path}: required field is missing or null"


def test_violation_inside_the_optional_reward_names_the_nested_field(pipeline, rivo_body):
    outcome = reject(pipeline, set_path(rivo_body, "reward.reward_type", 5))
    assert outcome.reason == "schema_violation"
    assert outcome.field == "reward.reward_type"


def test_violation_of_a_union_names_every_accepted_type(pipeline, rivo_body):
    outcome = reject(pipeline, set_path(rivo_body, "customer.points_tally", 2.5))
    assert outcome.field == "customer.points_tally"
    assert outcome.message == "customer.points_tally: expected null or long or string, got number"


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        ("customer.id", "john", "customer.id", "not a Shopify customer id"),
        ("customer.id", 0, "customer.id", "positive"),
        ("customer.id", -9876543210987, "customer.id", "positive"),
        ("applied_at", "last tuesday", "applied_at", "not an ISO 8601 timestamp"),
        ("expires_at", "in a month", "expires_at", "not an ISO 8601 timestamp"),
        ("used_at", "2025-02-30T00:00:00Z", "used_at", "not an ISO 8601 timestamp"),
        ("refunded_at", "n/a", "refunded_at", "not an ISO 8601 timestamp"),
        ("points_amount", -500, "points_amount", "must not be negative"),
        ("points_amount", "five hundred", "points_amount", "whole number"),
        ("id", "-1234567", "id", "must not be negative"),
        ("credits_amount", "abc", "credits_amount", "not a decimal amount"),
        ("credits_amount", "-1.00", "credits_amount", "must not be negative"),
        ("credits_amount", "NaN", "credits_amount", "not a finite amount"),
        ("customer.points_tally", "1_000", "customer.points_tally", "whole number"),
        ("reward.name", "x" * 1025, "reward.name", "longer than 1024 characters"),
        ("name", "x" * 1025, "name", "longer than 1024 characters"),
        ("code", "c" * 256, "code", "longer than 255 characters"),
        ("customer.id", "gid://shopify/Customer/\u0661", "customer.id", "not a Shopify"),
        ("credits_amount", "1_000.5", "credits_amount", "not a decimal amount"),
    ],
)
def test_normalization_errors(pipeline, rivo_body, path, value, field, words):
    outcome = reject(pipeline, set_path(rivo_body, path, value))
    assert outcome.reason == "normalization_error"
    assert outcome.field == field
    assert outcome.message.startswith(f"{field}: ")
    assert words in outcome.message
    assert outcome.provider == "rivo"


@pytest.mark.parametrize("balance", [-3, "-3", 0])
def test_a_negative_balance_is_accepted(pipeline, rivo_body, balance):
    # Points earned on a refunded order are clawed back: a balance may go below zero.
    record = accept(pipeline, set_path(rivo_body, "customer.points_tally", balance))
    assert record["points_balance_after"] == int(balance)


@pytest.mark.parametrize(
    ("credits", "canonical"), [("25.5000", "25.50"), ("0.0", "0.00"), ("1.125", "1.125")]
)
def test_credits_come_out_canonical(pipeline, rivo_body, credits, canonical):
    record = accept(pipeline, set_path(rivo_body, "credits_amount", credits))
    assert record["credits_redeemed"] == canonical


@pytest.mark.parametrize(
    ("header", "shop"),
    [(b"shop.myshopify.com", "shop.myshopify.com"), (b"  ", None), (b"", None)],
)
def test_x_shop_domain_sets_the_shop_when_it_is_a_host_name(pipeline, rivo_body, header, shop):
    record = accept(pipeline, rivo_body, [("X-Shop-Domain", header)])
    assert record["shop"] == (shop or rivo_body["customer"].get("shopify_domain"))


@pytest.mark.parametrize(
    "header", [b"shop.example\r\nX: 1", b"\x1b]0;pwned\x07", b"a" * 120_000, b"shop\xff.com"]
)
def test_x_shop_domain_that_is_not_a_host_name_is_rejected(pipeline, rivo_body, header):
    outcome = reject(pipeline, rivo_body, [("X-Shop-Domain", header)])
    assert (outcome.reason, outcome.field) == ("normalization_error", "X-Shop-Domain")


@pytest.mark.parametrize("credits", ["1e30", 1e300])
def test_huge_credits_amount_is_rejected_not_raised(pipeline, rivo_body, credits):
    outcome = pipeline.process(raw_record(set_path(rivo_body, "credits_amount", credits)))
    assert isinstance(outcome, Rejected)
    assert outcome.reason == "normalization_error"
    assert outcome.field == "credits_amount"


def test_huge_customer_id_string_is_rejected_not_raised(pipeline, rivo_body):
    outcome = pipeline.process(raw_record(set_path(rivo_body, "customer.id", "1" * 5000)))
    assert isinstance(outcome, Rejected)
    assert outcome.field == "customer.id"


def test_an_extra_field_named_dash_type_is_just_an_unknown_field(pipeline, rivo_body):
    rivo_body["customer"]["-type"] = "shopify_customer"
    assert isinstance(pipeline.process(raw_record(rivo_body)), Accepted)
