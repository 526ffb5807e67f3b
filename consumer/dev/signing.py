"""Sign a webhook body the way each provider does, for the samples of local runs, the
tests and the benchmarks. Kept out of the runtime package: the service only ever verifies.

How a provider signs is data, next to its sample payloads:
consumer/dev/webhooks/<provider>/signing.toml, written from the provider's documentation
(not from its verification code, so that the tests check one against the other). Each
[[scheme]] is one way the provider signs a redemption; the first is the one the samples
use. A scheme names:

  headers           the headers the provider sends, in order; values are templates
  signature_header  the header that carries the signature
  signed            the text that is signed: a template over {body} and the headers
  key               "text": the secret as UTF-8; "standard-webhooks": a secret written
                    whsec_<base64> stands for the decoded bytes, any other for its text
  encoding          "hex" or "base64" of the HMAC-SHA256
  prefix            written before the encoded HMAC (e.g. "sha256=", "v1,")

Templates may use {event_type} and {body_id} (20 hex digits of the body's SHA-256, so
that a sample's webhook id follows from its body), and the signed text also
{<header name>} and {body}.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources

from consumer.providers import PROVIDER_NAMES
from consumer.records import HeaderList

Signer = Callable[[str, bytes, str], HeaderList]
"""sign(secret, body, event_type) -> the headers the provider sends with the body."""

SIGNING_FILE = "signing.toml"
STANDARD_WEBHOOKS_SECRET_PREFIX = "whsec_"
# A webhook id derived from the body: distinct per sample, the same on every run.
_BODY_ID_HEX_DIGITS = 20


@dataclass(frozen=True)
class SigningScheme:
    name: str
    headers: tuple[tuple[str, str], ...]
    signature_header: str
    signed: str
    key: str
    encoding: str
    prefix: str = ""

    def sign(self, secret: str, body: bytes, event_type: str) -> HeaderList:
        facts = {
            "event_type": event_type,
            "body_id": hashlib.sha256(body).hexdigest()[:_BODY_ID_HEX_DIGITS],
        }
        headers = [(name, value.format_map(facts)) for name, value in self.headers]
        # The signed text is assembled around the body's bytes, never decoded: a body
        # that is not UTF-8 is signed as sent.
        before, found, after = self.signed.partition("{body}")
        values = {**facts, **dict(headers)}
        message = before.format_map(values).encode()
        if found:
            message += body + after.format_map(values).encode()
        digest = hmac.new(self._key(secret), message, hashlib.sha256).digest()
        encoded = digest.hex() if self.encoding == "hex" else base64.b64encode(digest).decode()
        signature = (self.signature_header, (self.prefix + encoded).encode())
        return [*((name, value.encode()) for name, value in headers), signature]

    def _key(self, secret: str) -> bytes:
        if self.key == "standard-webhooks" and secret.startswith(STANDARD_WEBHOOKS_SECRET_PREFIX):
            return base64.b64decode(secret.removeprefix(STANDARD_WEBHOOKS_SECRET_PREFIX))
        return secret.encode()


@cache
def signing_schemes(provider_name: str) -> tuple[SigningScheme, ...]:
    """Every way the provider signs, from its signing.toml; none when it has no file."""
    recipe = resources.files("consumer.dev") / "webhooks" / provider_name / SIGNING_FILE
    if not recipe.is_file():
        return ()
    schemes = tomllib.loads(recipe.read_text(encoding="utf-8"))["scheme"]
    return tuple(
        SigningScheme(
            name=scheme["name"],
            headers=tuple((name, value) for name, value in scheme["headers"]),
            signature_header=scheme["signature_header"],
            signed=scheme["signed"],
            key=scheme.get("key", "text"),
            encoding=scheme["encoding"],
            prefix=scheme.get("prefix", ""),
        )
        for scheme in schemes
    )


def scheme_signer(provider_name: str, scheme_name: str) -> Signer:
    """One named way a provider signs, for tests about that provider's schemes."""
    return next(s for s in signing_schemes(provider_name) if s.name == scheme_name).sign


SIGNERS: dict[str, Signer] = {
    name: signing_schemes(name)[0].sign for name in PROVIDER_NAMES if signing_schemes(name)
}
"""The samples' signer of each registered provider that has a signing.toml."""

# Named schemes the tests and benchmarks of the two original providers use directly.
mage_loyalty_headers = scheme_signer("mage_loyalty", "documented")
rivo_wire_headers = scheme_signer("rivo", "standard webhooks")
rivo_documented_headers = scheme_signer("rivo", "documented")
