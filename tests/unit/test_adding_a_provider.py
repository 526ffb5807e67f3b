"""The recipe of README "Adding a provider", followed inside this one file: a provider
module (the class below), its raw schema, its fixture, the registry line (the tuple
handed to the pipeline) and the canonical enum symbol (a schema directory of its own).
It goes through the pipeline end to end, its record encodes with the extended canonical
schema, and a downstream reader built on the released schema still reads it."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest

from consumer.errors import ConfigError, SignatureInvalid, SignatureMissing
from consumer.pipeline import Pipeline
from consumer.providers import PROVIDERS, fields
from consumer.providers.base import (
    CanonicalRecord,
    Headers,
    base64_hmac_sha256,
    first_text,
    matches_any,
)
from consumer.records import Accepted, Ignored, RawRecord, Rejected
from consumer.schemas import (
    SCHEMA_PACKAGE,
    SchemaLibrary,
    SingleObjectCodec,
    package_schemas,
    schema_fingerprint,
)

# --- the provider module --------------------------------------------------------------


class AcmeRewards:
    name = "acme_rewards"
    redemption_event = "reward.claimed"
    raw_schema_file = "acme_rewards.reward_claimed.avsc"
    known_event_types = frozenset(("reward.claimed", "points.added"))

    def recognises_headers(self, headers: Headers) -> bool:
        return "x-acme-signature" in headers

    def recognises_body(self, body: Mapping[str, Any]) -> bool:
        return "acme_event" in body

    def event_type(self, headers: Headers, body: Mapping[str, Any]) -> str | None:
        return first_text(body.get("acme_event"), headers.get("x-acme-event"))

    def verify_signature(self, secrets: tuple[str, ...], headers: Headers, raw_body: bytes) -> None:
        presented = headers.get("x-acme-signature")
        if presented is None:
            raise SignatureMissing("X-Acme-Signature header is absent", "X-Acme-Signature")
        expected = [base64_hmac_sha256(secret.encode(), raw_body) for secret in secrets]
        if not matches_any(expected, [presented.encode()]):
            raise SignatureInvalid("X-Acme-Signature does not match", "X-Acme-Signature")

    def normalise(self, body: Mapping[str, Any], headers: Headers) -> CanonicalRecord:
        return {
            "event_id": f"{self.name}:{body['claim_id']}",
            "provider": self.name,
            "provider_event_id": str(body["claim_id"]),
            "shop": None,
            "occurred_at": fields.timestamp(body["claimed_at"], "claimed_at"),
            "source": "points",
            "points_redeemed": fields.count(body["points"], "points"),
            "credits_redeemed": None,
            "points_balance_after": None,
            "customer": {
                "shopify_customer_id": fields.shopify_customer_id(
                    body["customer_id"], "customer_id"
                ),
                "email": None,
                "email_sha256": None,
                "first_name": None,
                "last_name": None,
                "loyalty_status": None,
                "accepts_marketing": None,
            },
            "reward": {
                "id": None,
                "name": body["reward"],
                "label": body["reward"],
                "type": None,
                "discount_code": None,
                "expires_at": None,
                "used_at": None,
                "refunded_at": None,
            },
        }


ACME = AcmeRewards()
SECRET = "acme-secret"

# --- its raw schema and its fixture ---------------------------------------------------

RAW_SCHEMA = {
    "type": "record",
    "name": "RewardClaimed",
    "namespace": "loyalty.raw.acme_rewards",
    "doc": "Acme Rewards' reward.claimed webhook.",
    "fields": [
        {"name": "acme_event", "type": "string", "doc": "Event type."},
        {"name": "claim_id", "type": "long", "doc": "Claim id."},
        {"name": "claimed_at", "type": "string", "doc": "ISO 8601 time of the claim."},
        {"name": "customer_id", "type": ["long", "string"], "doc": "Shopify customer id."},
        {"name": "points", "type": "long", "doc": "Points spent."},
        {"name": "reward", "type": "string", "doc": "Reward name."},
    ],
}
FIXTURE = orjson.dumps(
    {
        "acme_event": "reward.claimed",
        "claim_id": 77,
        "claimed_at": "2026-03-01T10:00:00Z",
        "customer_id": 9876543210987,
        "points": 250,
        "reward": "Free shipping",
    }
)


def signed(body: bytes) -> list[tuple[str, bytes]]:
    return [("X-Acme-Signature", base64_hmac_sha256(SECRET.encode(), body))]


# --- the registry line and the enum symbol --------------------------------------------


@pytest.fixture(scope="module")
def schema_dir(tmp_path_factory) -> Path:
    """The packaged schemas, plus Acme's raw schema and its symbol in the canonical
    Provider enum: what the two one-line edits in the repository amount to."""
    directory = tmp_path_factory.mktemp("schemas")
    packaged = Path(str(resources.files(SCHEMA_PACKAGE)))
    shutil.copytree(packaged, directory, dirs_exist_ok=True)
    (directory / ACME.raw_schema_file).write_bytes(orjson.dumps(RAW_SCHEMA))
    canonical = orjson.loads((directory / "loyalty_redemption.avsc").read_bytes())
    provider = next(f for f in canonical["fields"] if f["name"] == "provider")["type"]
    provider["symbols"].insert(-1, ACME.name)
    (directory / "loyalty_redemption.avsc").write_bytes(orjson.dumps(canonical))
    return directory


@pytest.fixture(scope="module")
def library(schema_dir) -> SchemaLibrary:
    return SchemaLibrary(schema_dir)


@pytest.fixture(scope="module")
def pipeline(library) -> Pipeline:
    return Pipeline(providers=(*PROVIDERS, ACME), schemas=library, secrets={ACME.name: (SECRET,)})


def test_a_redemption_of_the_new_provider_is_accepted_and_encodes(pipeline, library):
    outcome = pipeline.process(RawRecord(FIXTURE, signed(FIXTURE), "raw", 0, 5))
    assert isinstance(outcome, Accepted), outcome
    assert outcome.provider == "acme_rewards"
    assert outcome.record["customer"]["shopify_customer_id"] == "9876543210987"
    assert outcome.record["metadata"]["signature_verified"] is True

    writer = SingleObjectCodec(library.canonical())
    written = writer.encode(outcome.record)
    assert writer.decode(written)["provider"] == "acme_rewards"

    # A downstream reader on the released schema, once the new version is archived.
    released = package_schemas().canonical_history()[1]
    old_reader = SingleObjectCodec(
        released,
        writers={schema_fingerprint(library.canonical()): library.canonical()},
    )
    record = old_reader.decode(written)
    assert record["provider"] == "other"
    assert record["event_id"] == "acme_rewards:77"
    assert record["points_redeemed"] == 250


def test_the_new_provider_gets_the_same_checks_as_the_others(pipeline):
    other_event = FIXTURE.replace(b"reward.claimed", b"points.added")
    assert pipeline.process(RawRecord(other_event, signed(other_event))) == Ignored(
        provider="acme_rewards", event_type="points.added"
    )
    tampered = FIXTURE.replace(b"250", b"2500")
    rejected = pipeline.process(RawRecord(tampered, signed(FIXTURE)))
    assert isinstance(rejected, Rejected)
    assert rejected.reason == "signature_invalid"
    wrong_type = FIXTURE.replace(b'"points":250', b'"points":"many"')
    rejected = pipeline.process(RawRecord(wrong_type, signed(wrong_type)))
    assert (rejected.reason, rejected.field) == ("schema_violation", "points")


def test_the_existing_providers_are_unaffected(pipeline):
    from tests.helpers import payloads

    for provider in PROVIDERS:
        outcome = pipeline.process(RawRecord(payloads.seed_bytes(provider.name)))
        assert isinstance(outcome, Accepted), provider.name
        assert outcome.provider == provider.name


def test_a_secret_for_an_unregistered_provider_is_refused():
    with pytest.raises(ConfigError, match=r"unknown provider.*acme_rewards"):
        Pipeline(secrets={"acme_rewards": ("s",)})
