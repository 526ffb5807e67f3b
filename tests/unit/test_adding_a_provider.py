"""The recipe of CONTRIBUTING.md "Adding a provider", followed for a test-only provider,
Acme Rewards, twice.

In this process: the provider module (the class below), its raw schema, its fixture,
the registry line (the tuple handed to the pipeline) and the canonical enum symbol (a
schema directory of its own). It goes through the pipeline end to end, its record
encodes with the extended canonical schema, and a downstream reader built on the
released schema still reads it.

In a copy of the tree: the same provider written as its files, touching nothing else,
and the unit suite's provider-parametrised tests and hostile cases run over it. That
proves a provider lives in one place: everything else is derived from the registry."""

from __future__ import annotations

import filecmp
import inspect
import os
import shutil
import subprocess
import sys
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


# --- the same provider added to a copy of the tree -------------------------------------

ROOT = Path(__file__).resolve().parents[2]
# What a contributor writes for a provider (CONTRIBUTING.md, "Adding a provider"), and
# the pages the documentation generator rewrites from the registry.
PROVIDER_FILES = {
    "consumer/providers/acme_rewards.py",
    "schemas/acme_rewards.reward_claimed.avsc",
    "consumer/dev/webhooks/acme_rewards/reward_claimed.json",
    "consumer/dev/webhooks/acme_rewards/signing.toml",
    "consumer/providers/__init__.py",
    "schemas/loyalty_redemption.avsc",
    "schemas/history/loyalty_redemption.v2.avsc",
    "tests/unit/test_providers_acme_rewards.py",
}
GENERATED_PAGES = {"docs/configuration.md", "docs/data-contract.md"}
# The suite's tests that iterate the registry, the schemas and the hostile cases.
PROVIDER_PARAMETRISED_TESTS = (
    "tests/unit/test_providers_acme_rewards.py",
    "tests/unit/test_pipeline.py",
    "tests/unit/test_hostile_input.py",
    "tests/unit/test_schemas.py",
    "tests/unit/test_schema_evolution.py",
    "tests/unit/test_avro_compiled.py",
    "tests/unit/test_docs.py",
)
# The compiled-schema properties of the other providers' schemas say nothing about the
# new one, and are the slowest of these: only the new schema's run.
ONLY_THE_NEW_SCHEMAS_COMPILED = "not test_avro_compiled or acme_rewards"
COPIED = ("consumer", "schemas", "tests", "docs", "pyproject.toml", "mkdocs.yml")
COPIED += ("README.md", "CONTRIBUTING.md")
NOT_COPIED = shutil.ignore_patterns("__pycache__", "*.pyc", "schema_files")

MODULE_HEADER = """\
\"\"\"Acme Rewards: a test-only provider.\"\"\"

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from consumer.errors import SignatureInvalid, SignatureMissing
from consumer.providers import fields
from consumer.providers.base import (
    CanonicalRecord,
    Headers,
    base64_hmac_sha256,
    first_text,
    matches_any,
)


"""
SIGNING_TOML = """\
# Acme Rewards signs the raw body: X-Acme-Signature is its base64 HMAC-SHA256.

[[scheme]]
name = "documented"
headers = [
    ["Content-Type", "application/json"],
    ["X-Acme-Event", "{event_type}"],
]
signature_header = "X-Acme-Signature"
signed = "{body}"
encoding = "base64"
"""
PROVIDER_TESTS = """\
\"\"\"Acme Rewards: its documented redemption, its signature, its other events.\"\"\"

from consumer.dev.samples import redemption_payload
from consumer.dev.signing import SIGNERS
from consumer.pipeline import Pipeline
from consumer.records import Accepted, Ignored, RawRecord, Rejected

SECRET = "acme-secret"
PIPELINE = Pipeline(secrets={"acme_rewards": (SECRET,)})
BODY = redemption_payload("acme_rewards")


def signed(body, event="reward.claimed"):
    return SIGNERS["acme_rewards"](SECRET, body, event)


def test_its_documented_redemption_is_accepted():
    outcome = PIPELINE.process(RawRecord(BODY, signed(BODY)))
    assert isinstance(outcome, Accepted), outcome
    assert outcome.record["provider"] == "acme_rewards"
    assert outcome.record["metadata"]["signature_verified"] is True


def test_a_tampered_body_fails_its_signature():
    tampered = BODY.replace(b"250", b"2500")
    outcome = PIPELINE.process(RawRecord(tampered, signed(BODY)))
    assert isinstance(outcome, Rejected) and outcome.reason == "signature_invalid"


def test_its_other_events_are_ignored():
    other = BODY.replace(b"reward.claimed", b"points.added")
    outcome = PIPELINE.process(RawRecord(other, signed(other, "points.added")))
    assert outcome == Ignored(provider="acme_rewards", event_type="points.added")
"""


def _add_acme_rewards(tree: Path) -> None:
    """Every edit CONTRIBUTING.md asks for, and nothing else."""
    module = MODULE_HEADER + inspect.getsource(AcmeRewards) + "\n\nPROVIDER = AcmeRewards()\n"
    (tree / "consumer/providers/acme_rewards.py").write_text(module)
    (tree / "schemas" / ACME.raw_schema_file).write_bytes(
        orjson.dumps(RAW_SCHEMA, option=orjson.OPT_INDENT_2)
    )
    samples = tree / "consumer/dev/webhooks/acme_rewards"
    samples.mkdir()
    (samples / "reward_claimed.json").write_bytes(FIXTURE)
    (samples / "signing.toml").write_text(SIGNING_TOML)

    registry = tree / "consumer/providers/__init__.py"
    text = registry.read_text()
    for old, new in (
        ("import mage_loyalty, rivo", "import acme_rewards, mage_loyalty, rivo"),
        (
            "(mage_loyalty.PROVIDER, rivo.PROVIDER)",
            "(mage_loyalty.PROVIDER, rivo.PROVIDER, acme_rewards.PROVIDER)",
        ),
    ):
        assert old in text, f"the registry no longer reads {old!r}: update this test"
        text = text.replace(old, new)
    registry.write_text(text)

    canonical_file = tree / "schemas/loyalty_redemption.avsc"
    canonical = orjson.loads(canonical_file.read_bytes())
    provider = next(f for f in canonical["fields"] if f["name"] == "provider")["type"]
    provider["symbols"].insert(provider["symbols"].index("other"), ACME.name)
    canonical_file.write_bytes(orjson.dumps(canonical, option=orjson.OPT_INDENT_2))
    archived = sorted((tree / "schemas/history").glob("loyalty_redemption.v*.avsc"))
    next_version = len(archived) + 1
    shutil.copy(canonical_file, tree / f"schemas/history/loyalty_redemption.v{next_version}.avsc")

    (tree / "tests/unit/test_providers_acme_rewards.py").write_text(PROVIDER_TESTS)


def _changed_files(tree: Path) -> set[str]:
    changed = set()
    for path in tree.rglob("*"):
        relative = path.relative_to(tree)
        if path.is_dir() or "__pycache__" in relative.parts or relative.parts[0] == ".cache":
            continue
        original = ROOT / relative
        if not original.exists() or not filecmp.cmp(path, original, shallow=False):
            changed.add(str(relative))
    return changed


@pytest.mark.suite_in_a_copy
def test_a_provider_added_in_its_own_files_passes_the_provider_parametrised_suite(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=NOT_COPIED)
        else:
            shutil.copy(source, tree / name)
    # Installed, the schemas are the package consumer.schema_files; in the copy, a link.
    (tree / "consumer" / "schema_files").symlink_to(tree / "schemas")

    _add_acme_rewards(tree)
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    python = [sys.executable]
    subprocess.run([*python, "-m", "consumer.dev.generated_docs"], cwd=tree, env=env, check=True)
    assert _changed_files(tree) == PROVIDER_FILES | GENERATED_PAGES

    run = subprocess.run(
        [
            *python,
            *("-m", "pytest", "-q", "-p", "no:cacheprovider"),
            *("-k", ONLY_THE_NEW_SCHEMAS_COMPILED),
            *PROVIDER_PARAMETRISED_TESTS,
        ],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    # The copy's package is the one tested: its registry has the new provider.
    registered = subprocess.run(
        [*python, "-c", "from consumer.providers import PROVIDER_NAMES; print(*PROVIDER_NAMES)"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert registered.stdout.split() == ["mage_loyalty", "rivo", "acme_rewards"]
    assert "acme_rewards" in (tree / "docs/configuration.md").read_text()
