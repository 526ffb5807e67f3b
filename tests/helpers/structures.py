"""Structural hostile input, generated: deep nesting, huge strings, digits of other
scripts, hostile header values. Bytes alone rarely find these (a fuzzer mutating a 1 KB
seed does not write 10,000 brackets), yet each class once stopped the service.

Every choice goes through a Chooser, so the same builder serves the unit test (seeded
random, a bounded number of cases) and the coverage-guided fuzzer (atheris' data).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from consumer.records import HeaderList
from tests.helpers import hostile, payloads

# Around every limit that matters: the nesting limit (64), the parser's (1024), and
# Python's recursion limit (1000); up to 10,000.
DEPTHS = (1, 3, 63, 64, 65, 100, 500, 999, 1000, 1024, 1025, 5000, 10_000)
# Around the free-text bounds (255, 1024), the payload limit (1 MiB), and beyond it.
STRING_LENGTHS = (0, 1, 254, 255, 256, 1024, 1025, 65_536, 600_000, 1_048_577, 2 * 1024 * 1024)
# Text that int() or Decimal() would read as a number, but no provider sends.
NON_ASCII_NUMBERS = (
    "\u0661\u0662\u0663",  # Arabic-Indic 123
    "\u06f1\u06f2",  # Extended Arabic-Indic 12
    "\u0967\u0968\u0969",  # Devanagari 123
    "\uff11\uff12\uff13",  # fullwidth 123
    "\U0001d7d9\U0001d7da",  # mathematical double-struck 12
    "\u0661\u0662.\u0665",  # Arabic-Indic 12.5
    "1_000",
    "1_000.5",
    "1\u00b2",  # superscript two
    "\u00bd",  # vulgar fraction one half
    "0x1f",
    "1e3",
    " 12 ",
    "-0",
    "+7",
    "007",
    "gid://shopify/Customer/\u0661\u0662\u0663",
    "gid://shopify/Customer/0",
    "gid://shopify/Customer/007",
    "gid://shopify/Customer/" + "9" * 25,
)
HEADER_VALUES: tuple[bytes | None, ...] = (
    b"",
    None,
    b"\r\nX-Injected: 1",
    b"\x00",
    b"\x1b[2J",
    b"\xff\xfe\xfd",
    "caf\u00e9.example".encode(),
    b"a" * 120_000,
    b"points_redemption/created",
    b"notification/reward_expiry_last_chance",
    b"shop.myshopify.com",
)
HEADER_NAMES = (
    "X-Shop-Domain",
    "x-shop-domain",
    "rivo-webhook-topic",
    "Rivo-Signature",
    "rivo-webhook-signature",
    "rivo-webhook-id",
    "rivo-webhook-timestamp",
    "X-Webhook-Signature",
    "X-Webhook-Timestamp",
    "X-Webhook-Event",
    "User-Agent",
    "loyalty.error.reason",
    "loyalty.error.provider",
    "__connect.errors.topic",
)
_PLACEHOLDER = "\u2063structure\u2063"  # invisible separator: never in a seed
SIGNERS: dict[str, Callable[[bytes], HeaderList]] = {
    "rivo": hostile.rivo_signed,
    "mage_loyalty": hostile.mage_signed,
}
SEEDS = {"rivo": payloads.rivo_seed, "mage_loyalty": payloads.mage_seed}


class Chooser(Protocol):
    def below(self, n: int) -> int:
        """An integer in [0, n)."""


class RandomChooser:
    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def below(self, n: int) -> int:
        return self._random.randrange(n)


@dataclass(frozen=True)
class StructuralCase:
    name: str
    value: bytes
    headers: HeaderList


def pick(choose: Chooser, options: tuple | list) -> Any:
    return options[choose.below(len(options))]


def nested(depth: int, kind: int) -> bytes:
    """`depth` levels of arrays (kind 0), objects (1), or both alternating (2)."""
    if kind == 0:
        return b"[" * depth + b"]" * depth
    if kind == 1:
        return b'{"a":' * depth + b"null" + b"}" * depth
    opening = b'[{"a":' * (depth // 2) + b"[" * (depth % 2)
    closing = b"]" * (depth % 2) + b"}]" * (depth // 2)
    return opening + closing


def field_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside the seed's objects."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += field_paths(item, (*prefix, key))
    return found


def _set(body: dict, path: tuple, value: Any) -> None:
    *parents, last = path
    target = body
    for key in parents:
        target = target[key]
    target[last] = value


def _with_raw(body: dict, path: tuple, raw_json: bytes) -> bytes:
    """The body serialised with `raw_json` (any bytes, however deep) at `path`: orjson
    itself refuses to write more than 255 levels."""
    _set(body, path, _PLACEHOLDER)
    text = orjson.dumps(body)
    return text.replace(orjson.dumps(_PLACEHOLDER), raw_json, 1)


def structural_case(choose: Chooser) -> StructuralCase:
    provider = pick(choose, ("rivo", "mage_loyalty"))
    body = SEEDS[provider]()
    paths = field_paths(body)
    kind = choose.below(5)
    if kind == 0:  # deep nesting somewhere in the body, or as the whole body
        depth, shape = pick(choose, DEPTHS), choose.below(3)
        if choose.below(4) == 0:
            value = nested(depth, shape)
            where = "the whole value"
        else:
            path = pick(choose, [*paths, ("unknown_field",)])
            if choose.below(2):  # beside a schema violation, so the explanation runs
                email = ("data", "email") if provider == "mage_loyalty" else ("customer", "email")
                if path[: len(email)] != email:
                    _set(body, email, {"a": 1})
            value = _with_raw(body, path, nested(depth, shape))
            where = ".".join(map(str, path))
        name = f"{provider}: {depth}-deep nesting (shape {shape}) at {where}"
    elif kind == 1:  # a long string in any field
        length, path = pick(choose, STRING_LENGTHS), pick(choose, paths)
        _set(body, path, pick(choose, ("x", "\u00e9", "\U0001f600", "[")) * length)
        value = orjson.dumps(body)
        name = f"{provider}: {length}-character string at {'.'.join(map(str, path))}"
    elif kind == 2:  # numbers and ids spelled in other scripts
        text, path = pick(choose, NON_ASCII_NUMBERS), pick(choose, paths)
        _set(body, path, text)
        value = orjson.dumps(body)
        name = f"{provider}: {text!r} at {'.'.join(map(str, path))}"
    elif kind == 3:  # hostile header values, on a validly signed body
        value = orjson.dumps(body)
        headers = list(SIGNERS[provider](value))
        for _ in range(1 + choose.below(3)):
            header = (pick(choose, HEADER_NAMES), pick(choose, HEADER_VALUES))
            headers.insert(choose.below(len(headers) + 1), header)
        shown = [(n, v if v is None else v[:24]) for n, v in headers[-3:]]
        return StructuralCase(f"{provider}: hostile headers {shown}", value, headers)
    else:  # several of the above in one body: a long string and a deep value
        length, path = pick(choose, STRING_LENGTHS), pick(choose, paths)
        _set(body, path, "y" * length)
        value = _with_raw(body, ("deep",), nested(pick(choose, DEPTHS), choose.below(3)))
        name = f"{provider}: long string at {'.'.join(map(str, path))} and deep nesting"
    signed = choose.below(4) != 0  # mostly signed, so the case reaches the deep checks
    return StructuralCase(name, value, SIGNERS[provider](value) if signed else ())
