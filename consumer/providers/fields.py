"""Converters shared by the providers: raw JSON values in, canonical values out.

Each raises NormalizationError naming the field path, so a rejection says which value
could not be read. None of them echoes the value itself (it may be personal data).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from consumer.errors import NormalizationError

# ASCII digits only: \d would also take other scripts' digits, which int() reads.
_INTEGER = re.compile(r"[+-]?[0-9]+")
# Shopify's GraphQL id of a customer, which some apps send instead of the bare number.
# Its number follows the plain id's rules (ASCII digits, positive, canonical spelling).
_SHOPIFY_CUSTOMER_GID = re.compile(r"gid://shopify/Customer/([0-9]+)")
# A decimal amount as JSON or a provider writes it: ASCII digits, one point, an optional
# exponent. Decimal() alone would also read other scripts' digits ('١٢٣') and Python's
# digit separators ('1_000.5'), which no provider sends and no reader expects.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# 24 integer digits and 24 places (the exponent bounds below) fit in 50 characters;
# longer text is padding, and the amount is copied into the clean record.
_MAX_AMOUNT_CHARACTERS = 64
_TWO_PLACES = Decimal("0.01")
# Avro long: a larger count would pass JSON parsing but fail to encode.
_LONG_MAX = 2**63 - 1
# Longer digit strings cannot be a long or a Shopify id; checked before int(), which
# refuses strings over 4300 digits with a ValueError of its own.
_MAX_DIGITS = 20
# Amounts beyond 10^24 or finer than 10^-24 are not money but an attack or a bug:
# '1e-999999999' is 12 bytes of JSON and a gigabyte of decimal string. (Within the
# bound, quantizing to two places stays inside the decimal context's 28 digits.)
_MAX_AMOUNT_EXPONENT = 24
# RFC 3339 allows second 60 (a leap second); datetime does not.
_LEAP_SECOND = re.compile(r"(T\d{2}:\d{2}:)60(?=[.,]\d|Z|z|[+-]|$)")
# C0 and C1 control characters and DEL: in an email address they are an injection into
# mail headers or terminals downstream, never part of an address.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Free text is copied into the clean record, so each field has a bound; without one a
# body at the payload limit (1 MiB) would become a record over the clean topic's limit
# (reward.name is copied into reward.label too). Shopify caps names, titles and codes
# at 255 characters; a reward's display name gets more room, as providers let merchants
# write it freely.
MAX_NAME_CHARACTERS = 255
MAX_REWARD_NAME_CHARACTERS = 1024
# RFC 5321: a forward-path (an address) is at most 256 octets with its angle brackets.
MAX_EMAIL_CHARACTERS = 254
# RFC 1035: a domain name is at most 253 characters in text, each label 1-63 letters,
# digits or hyphens, neither starting nor ending with a hyphen.
MAX_HOST_NAME_CHARACTERS = 253
_HOST_NAME = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MILLISECOND = timedelta(milliseconds=1)


def timestamp(value: Any, field: str) -> datetime:
    """ISO 8601 to an aware UTC datetime in whole milliseconds (what timestamp-millis
    stores, so the record in hand equals the record a reader decodes). A timestamp
    without an offset is read as UTC: both providers document UTC ('Z') timestamps."""
    if not isinstance(value, str):
        raise NormalizationError(f"{field}: expected an ISO 8601 timestamp", field)
    try:
        parsed = _from_iso(value.strip())
        parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except ValueError:
        raise NormalizationError(f"{field}: not an ISO 8601 timestamp", field) from None
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise NormalizationError(f"{field}: outside the representable years", field) from None
    return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)


def _from_iso(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        if not _LEAP_SECOND.search(text):
            raise
    # A leap second is read as the next second, as POSIX time counts it.
    return datetime.fromisoformat(_LEAP_SECOND.sub(r"\g<1>59", text, count=1)) + timedelta(
        seconds=1
    )


def optional_timestamp(value: Any, field: str) -> datetime | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return timestamp(value, field)


def count(value: Any, field: str) -> int:
    """A non-negative whole number, from an integer or an integer in a string."""
    number = integer(value, field)
    if number < 0:
        raise NormalizationError(f"{field}: must not be negative", field)
    return number


def optional_count(value: Any, field: str) -> int | None:
    return None if value is None else count(value, field)


def integer(value: Any, field: str) -> int:
    """A whole number that may be negative (a points balance after a claw-back), from an
    integer or an integer in a string, within a 64-bit long."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif (
        isinstance(value, str)
        and len(value.strip()) <= _MAX_DIGITS
        and _INTEGER.fullmatch(value.strip())
    ):
        # The stripped text: str.strip() removes more than int() tolerates ('\x1e').
        number = int(value.strip())
    else:
        raise NormalizationError(f"{field}: expected a whole number", field)
    if not -_LONG_MAX - 1 <= number <= _LONG_MAX:
        raise NormalizationError(f"{field}: too large for a 64-bit integer", field)
    return number


def optional_integer(value: Any, field: str) -> int | None:
    return None if value is None else integer(value, field)


def decimal_string(value: Any, field: str) -> str | None:
    """The canonical decimal string: at least two places, trailing zeros beyond them
    dropped, so one amount has one spelling ('0.0' -> '0.00', '25.5000' -> '25.50',
    '1.125' stays). Places that are not zero are kept, never rounded away: this is money."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise NormalizationError(f"{field}: expected a decimal amount", field)
    # str() first: Decimal(0.1) would expose the float's binary expansion.
    text = str(value).strip()
    if text.lower().lstrip("+-") in ("nan", "snan", "inf", "infinity"):
        raise NormalizationError(f"{field}: not a finite amount", field)
    if len(text) > _MAX_AMOUNT_CHARACTERS or not _DECIMAL.fullmatch(text):
        raise NormalizationError(f"{field}: not a decimal amount", field)
    try:
        amount = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only what Decimal reads
        raise NormalizationError(f"{field}: not a decimal amount", field) from None
    if amount < 0:
        raise NormalizationError(f"{field}: must not be negative", field)
    if amount and (
        amount.adjusted() > _MAX_AMOUNT_EXPONENT or amount.adjusted() < -_MAX_AMOUNT_EXPONENT
    ):
        raise NormalizationError(f"{field}: amount out of range", field)
    if not amount:
        amount = Decimal(0)  # '-0.0' and '0E+5' are zero too
    # Trailing zeros beyond two places dropped by hand: Decimal.normalize() would round
    # to the context's 28 digits.
    sign, digits, exponent = amount.as_tuple()
    while exponent < -2 and len(digits) > 1 and digits[-1] == 0:
        digits, exponent = digits[:-1], exponent + 1
    amount = Decimal((sign, digits, exponent))
    if exponent > -2:
        amount = amount.quantize(_TWO_PLACES)
    return format(amount, "f")


def shopify_customer_id(value: Any, field: str) -> str:
    """The Shopify customer id as a decimal string. Integers come straight from the
    JSON parser (never through a float); a GraphQL gid is reduced to its number."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise NormalizationError(f"{field}: must be a positive id", field)
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        gid = _SHOPIFY_CUSTOMER_GID.fullmatch(text)
        if gid:
            text = gid.group(1)
        if len(text) <= _MAX_DIGITS and text.isdigit() and text.isascii() and int(text) > 0:
            return str(int(text))
    raise NormalizationError(f"{field}: not a Shopify customer id", field)


def optional_id(value: Any, field: str = "id") -> str | None:
    """Provider ids as strings; blank strings count as absent."""
    if value is None:
        return None
    text = str(value).strip()
    _bounded(text, field, MAX_NAME_CHARACTERS)
    return text or None


def optional_text(
    value: Any, field: str = "text", max_characters: int = MAX_NAME_CHARACTERS
) -> str | None:
    """Trimmed free text, at most `max_characters` (NormalizationError beyond: the clean
    record must fit its topic); blank text and non-strings count as absent."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    _bounded(text, field, max_characters)
    return text or None


def host_name(value: str | None, field: str) -> str | None:
    """A host name (RFC 1035/1123 letters, digits, hyphens and dots, at most 253
    characters), trimmed; blank counts as absent. Refuses control characters, spaces,
    ports, paths and anything else a header may carry."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if len(text) > MAX_HOST_NAME_CHARACTERS:
        raise NormalizationError(
            f"{field}: longer than a host name ({MAX_HOST_NAME_CHARACTERS} characters)", field
        )
    if not _HOST_NAME.fullmatch(text):
        raise NormalizationError(f"{field}: not a host name", field)
    return text


def _bounded(text: str, field: str, max_characters: int) -> None:
    if len(text) > max_characters:
        raise NormalizationError(
            f"{field}: longer than {max_characters} characters ({len(text)})", field
        )


def email(value: Any, field: str) -> tuple[str | None, str | None]:
    """Trimmed, lower-cased email and its hex SHA-256; (None, None) when absent."""
    normalised = optional_text(value, field, MAX_EMAIL_CHARACTERS)
    if normalised is None:
        return None, None
    if _CONTROL_CHARACTER.search(normalised):
        raise NormalizationError(f"{field}: contains control characters", field)
    normalised = normalised.lower()
    return normalised, hashlib.sha256(normalised.encode()).hexdigest()


def from_epoch_millis(millis: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=millis)


def epoch_millis(moment: datetime) -> int:
    # Integer arithmetic: float seconds * 1000 is a millisecond short for some instants.
    return (moment - _EPOCH) // _ONE_MILLISECOND
