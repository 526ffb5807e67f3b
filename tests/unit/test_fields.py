"""consumer.providers.fields: raw JSON values in, canonical values out."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.errors import NormalizationError
from consumer.providers import fields

LONG_MAX = 2**63 - 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- timestamp ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2026-02-18T12:00:00.000Z",
        "2026-02-18T12:00:00Z",
        "2026-02-18T12:00:00+00:00",
        "2026-02-18T13:00:00+01:00",
        "2026-02-18T06:30:00-05:30",
        "2026-02-18 12:00:00Z",
        "  2026-02-18T12:00:00.000Z  ",
        "2026-02-18T12:00:00",  # no offset: read as UTC
    ],
)
def test_timestamp_spellings_of_one_instant(text):
    parsed = fields.timestamp(text, "timestamp")
    assert parsed == datetime(2026, 2, 18, 12, 0, tzinfo=UTC)
    assert parsed.utcoffset() == timedelta(0)


def test_timestamp_keeps_milliseconds():
    parsed = fields.timestamp("2025-04-25T15:08:36.223Z", "applied_at")
    assert parsed == datetime(2025, 4, 25, 15, 8, 36, 223000, tzinfo=UTC)


@pytest.mark.parametrize("value", ["yesterday", "", "2026-13-01T00:00:00Z", "12:00", "2026/02/18"])
def test_timestamp_unparseable_names_the_field(value):
    with pytest.raises(NormalizationError) as caught:
        fields.timestamp(value, "applied_at")
    assert caught.value.field == "applied_at"
    assert caught.value.reason == "normalization_error"
    assert caught.value.message.startswith("applied_at: ")
    assert "ISO 8601" in caught.value.message


@pytest.mark.parametrize("value", [None, 1771416000, 1.5, ["2026-02-18"], {"at": 1}])
def test_timestamp_of_a_non_string_is_rejected(value):
    with pytest.raises(NormalizationError) as caught:
        fields.timestamp(value, "timestamp")
    assert caught.value.field == "timestamp"


@pytest.mark.parametrize("value", [None, "", "   "])
def test_optional_timestamp_absent(value):
    assert fields.optional_timestamp(value, "expires_at") is None


def test_optional_timestamp_present():
    assert fields.optional_timestamp("2025-05-25T15:08:36.223Z", "expires_at") == datetime(
        2025, 5, 25, 15, 8, 36, 223000, tzinfo=UTC
    )


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_timestamp_out_of_range_is_a_normalization_error(value):
    with pytest.raises(NormalizationError):
        fields.timestamp(value, "timestamp")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2016-12-31T23:59:60Z", datetime(2017, 1, 1, tzinfo=UTC)),
        ("2016-12-31T23:59:60.250Z", datetime(2017, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)),
        ("2017-01-01T00:59:60+01:00", datetime(2017, 1, 1, tzinfo=UTC)),
        ("2016-12-31T23:59:60", datetime(2017, 1, 1, tzinfo=UTC)),
    ],
)
def test_a_leap_second_is_read_as_the_next_second(value, expected):
    assert fields.timestamp(value, "applied_at") == expected


@pytest.mark.parametrize(
    "value", ["2016-12-31T23:59:61Z", "2016-12-31T23:60:00Z", "9999-12-31T23:59:60Z"]
)
def test_only_second_60_is_a_leap_second(value):
    with pytest.raises(NormalizationError):
        fields.timestamp(value, "applied_at")


# --- count ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (500, 500), ("500", 500), (" 500 ", 500), ("+7", 7), (LONG_MAX, LONG_MAX)],
)
def test_count(value, expected):
    assert fields.count(value, "points_amount") == expected


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (-1, "must not be negative"),
        ("-5", "must not be negative"),
        (LONG_MAX + 1, "too large"),
        (str(LONG_MAX + 1), "too large"),
        ("5.5", "whole number"),
        (5.0, "whole number"),
        ("five", "whole number"),
        ("", "whole number"),
        (True, "whole number"),
        (None, "whole number"),
    ],
)
def test_count_rejects(value, words):
    with pytest.raises(NormalizationError) as caught:
        fields.count(value, "data.points_redeemed")
    assert caught.value.field == "data.points_redeemed"
    assert caught.value.message.startswith("data.points_redeemed: ")
    assert words in caught.value.message


def test_count_of_a_huge_digit_string_is_a_normalization_error():
    with pytest.raises(NormalizationError):
        fields.count("9" * 5000, "points_amount")


def test_optional_count():
    assert fields.optional_count(None, "customer.points_tally") is None
    assert fields.optional_count("27", "customer.points_tally") == 27


# --- decimal_string -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.0", "0.00"),
        ("0", "0.00"),
        (0, "0.00"),
        (0.0, "0.00"),
        ("25.5", "25.50"),
        (25.5, "25.50"),
        ("25.50", "25.50"),
        ("10", "10.00"),
        (10, "10.00"),
        (0.1, "0.10"),  # through str(), not the float's binary expansion
        ("25.505", "25.505"),  # extra places are kept, never rounded
        ("0.001", "0.001"),
        (" 3.5 ", "3.50"),
        ("1E+2", "100.00"),
        ("12345678901234567890.5", "12345678901234567890.50"),
    ],
)
def test_decimal_string(value, expected):
    assert fields.decimal_string(value, "credits_amount") == expected


def test_decimal_string_of_null_is_null():
    assert fields.decimal_string(None, "credits_amount") is None


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("abc", "not a decimal amount"),
        ("", "not a decimal amount"),
        ("NaN", "not a finite amount"),
        ("Infinity", "not a finite amount"),
        ("-1.00", "must not be negative"),
        (-0.5, "must not be negative"),
        (True, "expected a decimal amount"),
        ([1], "expected a decimal amount"),
        ({"amount": 1}, "expected a decimal amount"),
    ],
)
def test_decimal_string_rejects(value, words):
    with pytest.raises(NormalizationError) as caught:
        fields.decimal_string(value, "credits_amount")
    assert caught.value.field == "credits_amount"
    assert words in caught.value.message


@given(
    st.decimals(
        min_value=0, max_value=Decimal("1e15"), allow_nan=False, allow_infinity=False, places=6
    )
)
def test_decimal_string_preserves_the_amount(amount):
    text = fields.decimal_string(str(amount), "credits_amount")
    assert Decimal(text) == amount
    whole, _, fraction = text.partition(".")
    assert whole.isdigit()
    assert len(fraction) >= 2
    assert "e" not in text.lower()


@pytest.mark.parametrize("value", ["1e30", 1e26, "1E+400"])
def test_decimal_string_of_a_huge_amount_is_a_normalization_error(value):
    with pytest.raises(NormalizationError):
        fields.decimal_string(value, "credits_amount")


def test_decimal_string_bounds_the_number_of_places():
    with pytest.raises(NormalizationError):
        fields.decimal_string("1e-1000000", "credits_amount")


@pytest.mark.parametrize("value", ["-0.0", -0.0, "-0"])
def test_decimal_string_of_negative_zero_is_canonical(value):
    assert fields.decimal_string(value, "credits_amount") == "0.00"


# --- shopify_customer_id --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("6789012345", "6789012345"),
        (6789012345, "6789012345"),
        (9876543210987, "9876543210987"),
        # 2**53 + 1: a float would turn it into ...992.
        (9007199254740993, "9007199254740993"),
        ("9007199254740993", "9007199254740993"),
        (LONG_MAX, str(LONG_MAX)),
        (" 6789012345 ", "6789012345"),
        ("gid://shopify/Customer/9876543210987", "9876543210987"),
    ],
)
def test_shopify_customer_id(value, expected):
    assert fields.shopify_customer_id(value, "customer.id") == expected


@pytest.mark.parametrize(
    "value",
    [0, -5, "0", "-5", "abc", "", "12a", "١٢٣", 1.0, True, None, [], "gid://shopify/Order/1"],
)
def test_shopify_customer_id_rejects(value):
    with pytest.raises(NormalizationError) as caught:
        fields.shopify_customer_id(value, "customer.id")
    assert caught.value.field == "customer.id"
    assert caught.value.message.startswith("customer.id: ")


@given(st.integers(min_value=1, max_value=LONG_MAX))
def test_shopify_customer_id_is_exact_for_every_long(number):
    assert fields.shopify_customer_id(number, "customer.id") == str(number)
    assert fields.shopify_customer_id(str(number), "customer.id") == str(number)


def test_shopify_customer_id_of_a_huge_digit_string_is_a_normalization_error():
    with pytest.raises(NormalizationError):
        fields.shopify_customer_id("9" * 5000, "customer.id")


# --- ids, text, email -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("  ", None), (789012, "789012"), (" clrew ", "clrew"), (0, "0")],
)
def test_optional_id(value, expected):
    assert fields.optional_id(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("  ", None), (" x ", "x"), (5, None), (True, None)],
)
def test_optional_text(value, expected):
    assert fields.optional_text(value) == expected


def test_email_is_trimmed_lower_cased_and_hashed():
    email, digest = fields.email("  Jane@Example.COM ", "email")
    assert email == "jane@example.com"
    assert digest == hashlib.sha256(b"jane@example.com").hexdigest()
    assert digest == "8c87b489ce35cf2e2f39f80e282cb2e804932a56a213983eeeb428407d43b52d"


@pytest.mark.parametrize(
    "value",
    [
        "jane\x00@example.com",
        "jane@example.com\r\nBcc: x@example.com",
        "j\x1b[2J@x.com",
        "a\x7f@x.com",
        "a\x85@x.com",
    ],
)
def test_an_email_with_control_characters_is_rejected_without_quoting_it(value):
    with pytest.raises(NormalizationError) as caught:
        fields.email(value, "customer.email")
    assert caught.value.field == "customer.email"
    assert "example" not in caught.value.message and "x.com" not in caught.value.message


def test_an_email_keeps_non_ascii_letters():
    assert fields.email("Jürgen@Example.de", "email")[0] == "jürgen@example.de"


@pytest.mark.parametrize("value", [None, "", "   ", 5])
def test_email_absent(value):
    assert fields.email(value, "email") == (None, None)


# --- epoch_millis ---------------------------------------------------------------------


@given(st.datetimes())
def test_epoch_millis_of_whole_milliseconds(moment):
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000, tzinfo=UTC)
    assert fields.epoch_millis(moment) == (moment - EPOCH) // timedelta(milliseconds=1)


def test_epoch_millis_ignores_the_offset_spelling():
    utc = datetime(2026, 2, 18, 12, 0, tzinfo=UTC)
    plus_one = datetime(2026, 2, 18, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    assert fields.epoch_millis(utc) == fields.epoch_millis(plus_one) == 1771416000000


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1970, 4, 9, 0, 0, 0, 347000, tzinfo=UTC),
        datetime(2004, 7, 25, 11, 49, 27, 498000, tzinfo=UTC),
        datetime(2107, 1, 1, 0, 0, 0, 4000, tzinfo=UTC),
    ],
)
def test_epoch_millis_is_exact_outside_the_lucky_range(moment):
    assert fields.epoch_millis(moment) == (moment - EPOCH) // timedelta(milliseconds=1)


# --- signed integers (balances) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(-120, -120), ("-5", -5), (" -5 ", -5), (0, 0), ("27", 27), (-LONG_MAX - 1, -LONG_MAX - 1)],
)
def test_a_balance_may_be_negative(value, expected):
    assert fields.optional_integer(value, "customer.points_tally") == expected


@pytest.mark.parametrize("value", ["-\u0661", "\u0661\u0662", "1_000", -LONG_MAX - 2, "5.5", True])
def test_a_balance_is_still_a_whole_ascii_number_in_range(value):
    with pytest.raises(NormalizationError) as caught:
        fields.optional_integer(value, "customer.points_tally")
    assert caught.value.field == "customer.points_tally"


def test_a_missing_balance_is_null():
    assert fields.optional_integer(None, "customer.points_tally") is None


# --- canonical amounts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("25.5000", "25.50"),
        ("0.0", "0.00"),
        ("0.000", "0.00"),
        ("1.125", "1.125"),
        ("1.1250", "1.125"),
        ("1.10", "1.10"),
        ("1.100", "1.10"),
        ("100", "100.00"),
        ("1e2", "100.00"),
        ("1.5e-1", "0.15"),
        ("1.2300e-3", "0.00123"),
        (".5", "0.50"),
        ("5.", "5.00"),
        # 30 significant digits: Decimal.normalize() would round to 28; never rounded.
        ("1.00000000000000000000000000001", "1.00000000000000000000000000001"),
    ],
)
def test_amounts_have_one_spelling(value, expected):
    assert fields.decimal_string(value, "credits_amount") == expected


@pytest.mark.parametrize(
    "value",
    [
        "\u0661\u0662\u0663",  # Arabic-Indic digits: Decimal() reads them
        "\u0661\u0662.\u0665",
        "\uff11\uff12",  # fullwidth
        "1_000.5",  # Python's digit separator: Decimal() reads it
        "1 000",
        "0x10",
        "1,5",
        "1." + "0" * 100,  # longer than any amount
    ],
)
def test_amounts_are_ascii_decimals(value):
    with pytest.raises(NormalizationError) as caught:
        fields.decimal_string(value, "credits_amount")
    assert caught.value.message == "credits_amount: not a decimal amount"


@given(st.decimals(min_value=0, max_value=Decimal("1e15"), allow_nan=False, places=6))
def test_canonical_amounts_are_fixed_points_of_the_canonical_form(amount):
    once = fields.decimal_string(str(amount), "credits_amount")
    assert fields.decimal_string(once, "credits_amount") == once
    places = once.partition(".")[2]
    assert len(places) == 2 or not places.endswith("0")


# --- gid ids ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gid://shopify/Customer/9876543210987", "9876543210987"),
        ("gid://shopify/Customer/0009876543210987", "9876543210987"),  # as plain ids
        (" gid://shopify/Customer/7 ", "7"),
    ],
)
def test_gid_ids_follow_the_plain_ids_rules(value, expected):
    assert fields.shopify_customer_id(value, "customer.id") == expected
    plain = value.strip().rpartition("/")[2]
    assert fields.shopify_customer_id(plain, "customer.id") == expected


@pytest.mark.parametrize(
    "value",
    [
        "gid://shopify/Customer/0",
        "gid://shopify/Customer/000",
        "gid://shopify/Customer/\u0661\u0662\u0663",
        "gid://shopify/Customer/\uff11\uff12",
        "gid://shopify/Customer/" + "9" * 21,
        "gid://shopify/Customer/12\n34",
        "gid://shopify/Customer/-5",
        "gid://shopify/Customer/",
    ],
)
def test_gid_ids_refuse_what_plain_ids_refuse(value):
    with pytest.raises(NormalizationError) as caught:
        fields.shopify_customer_id(value, "customer.id")
    assert caught.value.field == "customer.id"


# --- bounded text and host names -------------------------------------------------------


def test_free_text_is_bounded_naming_the_field_not_the_value():
    assert fields.optional_text("x" * fields.MAX_NAME_CHARACTERS, "code") is not None
    with pytest.raises(NormalizationError) as caught:
        fields.optional_text("secret" * 100, "code")
    assert caught.value.field == "code"
    assert "longer than 255 characters" in caught.value.message
    assert "secret" not in caught.value.message


def test_the_bound_applies_after_trimming():
    padded = " " * 1000 + "x" * fields.MAX_NAME_CHARACTERS + " " * 1000
    assert fields.optional_text(padded, "code") == "x" * fields.MAX_NAME_CHARACTERS


def test_ids_and_emails_are_bounded():
    with pytest.raises(NormalizationError):
        fields.optional_id("r" * 256, "reward.id")
    with pytest.raises(NormalizationError):
        fields.email("j" * 250 + "@example.com", "customer.email")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("shop.myshopify.com", "shop.myshopify.com"),
        (" Shop-1.MyShopify.com ", "Shop-1.MyShopify.com"),
        ("localhost", "localhost"),
        ("xn--caf-dma.example", "xn--caf-dma.example"),  # an IDN, as DNS spells it
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_host_names(value, expected):
    assert fields.host_name(value, "X-Shop-Domain") == expected


@pytest.mark.parametrize(
    "value",
    [
        "shop.myshopify.com\r\nX-Injected: 1",
        "\x1b[2Jshop.myshopify.com",
        "shop\x00.example",
        "shop.myshopify.com:443",
        "https://shop.myshopify.com/",
        "shop .example",
        "café.example",
        "\ufffd.example",  # what an undecodable header byte becomes
        "-shop.example",
        "shop-.example",
        "shop..example",
        "shop.example.",
        "a" * 64 + ".example",  # a label over 63
        ".".join(["a" * 63] * 4) + ".example",  # over 253
        "a" * 120_000,
    ],
)
def test_what_is_not_a_host_name(value):
    with pytest.raises(NormalizationError) as caught:
        fields.host_name(value, "X-Shop-Domain")
    assert caught.value.field == "X-Shop-Domain"
    assert len(caught.value.message) < 100
