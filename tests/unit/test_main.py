"""`loyalty-consumer normalize`: the contract's offline command."""

from __future__ import annotations

import io
import sys

import orjson
import pytest

from consumer.__main__ import main
from tests.helpers.payloads import MAGE_SEED_FILE as MAGE_SEED
from tests.helpers.payloads import RIVO_SEED_FILE as RIVO_SEED


def run(capsysbinary, *args: str, stdin: bytes | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    status = main(["normalize", *args])
    out = capsysbinary.readouterr().out
    return status, [orjson.loads(line) for line in out.splitlines()]


def test_seed_payloads_print_their_canonical_records(capsysbinary):
    status, lines = run(capsysbinary, str(MAGE_SEED), str(RIVO_SEED))
    assert status == 0
    assert [line["outcome"] for line in lines] == ["accepted", "accepted"]
    mage, rivo = lines[0]["record"], lines[1]["record"]
    assert mage["provider"] == "mage_loyalty"
    assert mage["occurred_at"] == "2026-02-18T12:00:00.000Z"
    assert mage["source"] == "points"
    assert mage["metadata"]["source_topic"] == str(MAGE_SEED)
    assert mage["metadata"]["source_partition"] == -1
    assert mage["metadata"]["signature_verified"] is None
    assert rivo["event_id"] == "rivo:1234567"
    assert rivo["reward"]["type"] == "fixed_amount"
    assert rivo["reward"]["expires_at"] == "2025-05-25T15:08:36.223Z"
    assert rivo["customer"]["shopify_customer_id"] == "9876543210987"


def test_any_rejection_exits_1_and_says_why(capsysbinary, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_bytes(b'{"event": "points.redeemed", "data": {}}')
    status, lines = run(capsysbinary, str(MAGE_SEED), str(broken))
    assert status == 1
    assert lines[0]["outcome"] == "accepted"
    assert lines[1] == {
        "outcome": "rejected",
        "reason": "schema_violation",
        "message": lines[1]["message"],
        "field": lines[1]["field"],
    }
    assert lines[1]["field"] in ("timestamp", "data.shopify_customer_id")


def test_ignored_exits_0(capsysbinary, tmp_path):
    earned = tmp_path / "earned.json"
    earned.write_bytes(MAGE_SEED.read_bytes().replace(b"points.redeemed", b"points.earned"))
    status, lines = run(capsysbinary, str(earned))
    assert status == 0
    assert lines == [
        {
            "outcome": "ignored",
            "reason": "not_a_redemption",
            "message": "mage_loyalty event points.earned is not a redemption",
            "field": None,
        }
    ]


def test_headers_apply_to_every_input_and_stdin_is_read(capsysbinary, monkeypatch):
    status, lines = run(
        capsysbinary,
        "--header",
        "rivo-webhook-topic=notification/reward_expiry_last_chance",
        stdin=RIVO_SEED.read_bytes(),
        monkeypatch=monkeypatch,
    )
    assert status == 0
    assert lines[0]["outcome"] == "ignored"


def test_signature_checks_apply_when_a_secret_is_set(capsysbinary, monkeypatch):
    monkeypatch.setenv("RIVO_WEBHOOK_SECRET", "s3cret")
    status, lines = run(capsysbinary, str(RIVO_SEED))
    assert status == 1
    assert lines[0]["reason"] == "signature_missing"


def test_dash_is_stdin_among_files(capsysbinary, monkeypatch):
    status, lines = run(
        capsysbinary, str(MAGE_SEED), "-", stdin=RIVO_SEED.read_bytes(), monkeypatch=monkeypatch
    )
    assert status == 0
    assert [line["record"]["provider"] for line in lines] == ["mage_loyalty", "rivo"]
    assert lines[1]["record"]["metadata"]["source_topic"] == "-"


def test_a_missing_file_among_several_is_one_line_and_the_rest_still_run(capsysbinary):
    status, lines = run(capsysbinary, str(MAGE_SEED), "/no/such/file.json", str(RIVO_SEED))
    assert status == 2
    assert [line["outcome"] for line in lines] == ["accepted", "error", "accepted"]
    assert lines[1]["input"] == "/no/such/file.json"
    assert "No such file" in lines[1]["message"]


@pytest.mark.parametrize("args", [["--header", "no-equals-sign"], ["--bogus"]])
def test_usage_errors_exit_2(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["normalize", *args])
    assert exit_info.value.code == 2


def test_normalize_without_input_on_a_terminal_says_what_to_give(capsys, monkeypatch):
    class Terminal(io.BytesIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal())
    with pytest.raises(SystemExit) as exit_info:
        main(["normalize"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "give webhook files, or pipe a webhook in" in err
    assert "Traceback" not in err


def test_ctrl_c_is_one_line_and_exit_130(capsys, monkeypatch):
    def interrupted(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    monkeypatch.setattr("consumer.__main__._normalize", interrupted)
    assert main(["normalize", "-"]) == 130
    assert capsys.readouterr().err == "loyalty-consumer normalize: interrupted\n"


def test_an_unexpected_error_is_one_line_unless_verbose(capsys, monkeypatch):
    def broken(*_args):
        raise RuntimeError("something unforeseen\nsecond line")

    monkeypatch.setattr("consumer.__main__._normalize", broken)
    assert main(["normalize", "x"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "loyalty-consumer normalize: RuntimeError: something unforeseen "
        "(--verbose shows where it came from)\n"
    )
    with pytest.raises(RuntimeError):
        main(["normalize", "--verbose", "x"])


def test_run_help_and_describe_are_generated_from_the_variables():
    from consumer.__main__ import RUN_HELP
    from consumer.config import VARIABLES, Settings

    shown = Settings().describe()
    for variable in VARIABLES:
        assert variable.help, f"{variable.name} has no help text"
        line = next(line for line in RUN_HELP.splitlines() if variable.name in line)
        assert variable.help in line
        assert variable.field in shown
    assert set(shown) - {v.field for v in VARIABLES} == {"signature_checks"}


@pytest.mark.parametrize("depth", [500, 1000, 10_000])
def test_deep_nesting_beside_a_violation_is_a_rejection_line_not_a_traceback(
    capsysbinary, tmp_path, depth
):
    # The recipe that once raised RecursionError here and stopped the service for good.
    body = orjson.loads(MAGE_SEED.read_bytes())
    body["data"]["email"] = {"a": 1}
    value = orjson.dumps(body)[:-1] + b',"deep":' + b"[" * depth + b"]" * depth + b"}"
    webhook = tmp_path / "deep.json"
    webhook.write_bytes(value)
    status, lines = run(capsysbinary, str(webhook))
    assert status == 1
    assert lines[0]["outcome"] == "rejected"
    assert lines[0]["reason"] == "invalid_json"
    assert "nested deeper than" in lines[0]["message"]
