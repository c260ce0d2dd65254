"""Command bookkeeping without a broker: counters, request-id memory, the error-reply budget,
`sent_at` and its age check, the summary message and the configuration keys behind them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from siamedge.config import MAX_SESSION_EXPIRY_S, Settings, load_settings
from siamedge.errors import CommandError, ConfigError
from siamedge.messaging.client import outcome_of
from siamedge.messaging.ledger import OUTCOMES, CommandCounters, ErrorBudget, RecentRequestIds
from siamedge.messaging.protocol import (
    DroppedCommandError,
    DuplicateCommandError,
    StaleCommandError,
    StartCommand,
    StopCommand,
    check_command_age,
    encode_error_summary,
    parse_start,
    parse_stop,
)

NOW = 1_800_000_000.0


def test_counters_start_at_zero_for_every_outcome_and_add_up() -> None:
    counters = CommandCounters()
    assert counters.snapshot() == dict.fromkeys(OUTCOMES, 0)
    counters.add("accepted")
    counters.add("stale", 3)
    snapshot = counters.snapshot()
    assert (snapshot["accepted"], snapshot["stale"], sum(snapshot.values())) == (1, 3, 4)


def test_recent_request_ids_remember_a_bounded_number() -> None:
    recent = RecentRequestIds(capacity=2)
    assert recent.take("a") and recent.take("b")
    assert not recent.take("a")
    assert recent.take("c")  # forgets "a", the oldest
    assert len(recent) == 2 and "a" not in recent
    assert recent.take("a")


def test_error_budget_counts_what_it_holds_back_and_reports_it_once() -> None:
    budget = ErrorBudget(rate_per_s=2.0, now=0.0)
    assert [budget.admit(0.0) for _ in range(5)] == [True, True, False, False, False]
    assert budget.take_summary(0.1) == 0  # no token back yet
    # once a reply was held back, later ones join the summary (replies stay in order)
    assert budget.admit(0.4) is False
    assert budget.take_summary(0.6) == 4
    assert budget.suppressed == 0
    assert budget.take_summary(10.0) == 0
    assert budget.admit(10.0) is True


def test_error_budget_takes_back_a_summary_that_could_not_be_sent() -> None:
    budget = ErrorBudget(rate_per_s=1.0, now=0.0)
    assert budget.admit(0.0) and not budget.admit(0.0)
    count = budget.take_summary(1.0)
    budget.restore(count)
    assert budget.suppressed == 1
    assert budget.take_summary(2.0) == 1


def test_error_budget_needs_a_positive_rate() -> None:
    with pytest.raises(ValueError, match="rate_per_s"):
        ErrorBudget(rate_per_s=0.0, now=0.0)


def test_sent_at_is_parsed_on_start_and_stop() -> None:
    start = parse_start(b'{"box": [1, 2, 3, 4], "sent_at": 1800000000.25}', None)
    assert start == StartCommand((1.0, 2.0, 3.0, 4.0), None, None, 1_800_000_000.25)
    assert parse_stop(b'{"all": true, "sent_at": 5}') == StopCommand(None, None, 5.0)
    assert parse_stop(b'{"all": true}').sent_at is None


@pytest.mark.parametrize(
    ("sent_at", "reason"),
    [
        ('"now"', "field 'sent_at' (unix seconds) must be a number, got string"),
        ("true", "must be a number, got boolean"),
        ("-3", "field 'sent_at' must be unix seconds (positive), got -3"),
        ("1e400", "must be a finite number"),
    ],
)
def test_bad_sent_at_is_rejected_with_its_request_id(sent_at: str, reason: str) -> None:
    payload = f'{{"all": true, "request_id": "r9", "sent_at": {sent_at}}}'.encode()
    with pytest.raises(CommandError) as caught:
        parse_stop(payload)
    assert reason in caught.value.reason
    assert caught.value.request_id == "r9"


def test_age_check_accepts_fresh_commands_and_those_without_sent_at() -> None:
    for sent_at in (None, NOW, NOW - 9.9, NOW + 1.9):
        check_command_age(sent_at, "r", now=NOW, max_age_s=10.0, clock_skew_s=2.0)
    check_command_age(NOW - 1e6, "r", now=NOW, max_age_s=None, clock_skew_s=2.0)


def test_age_check_names_the_age_of_an_old_command() -> None:
    with pytest.raises(StaleCommandError) as caught:
        check_command_age(NOW - 42.5, "old", now=NOW, max_age_s=10.0, clock_skew_s=2.0)
    assert caught.value.reason.startswith("stale: sent 42.5 s ago")
    assert "older than 10 s" in caught.value.reason
    assert caught.value.request_id == "old"


def test_a_clock_mismatch_names_this_daemons_clock_too() -> None:
    # A board that booted in 2018 (no battery clock, NTP not there yet) refused every command
    # with sent_at, telling the sender to check a clock that was right.
    booted_2018 = 1514764800.0 + 3600.0
    with pytest.raises(StaleCommandError) as caught:
        check_command_age(NOW, "r", now=booted_2018, max_age_s=10.0, clock_skew_s=2.0)
    assert caught.value.reason.endswith(
        "check the sender's clock, and this daemon's: it says 2018-01-01 01:00:00 UTC"
    )
    with pytest.raises(StaleCommandError) as caught:
        check_command_age(booted_2018, "r", now=NOW, max_age_s=10.0, clock_skew_s=2.0)
    assert "and this daemon's: it says " in caught.value.reason
    with pytest.raises(StaleCommandError) as caught:
        check_command_age(NOW - 42.5, "r", now=NOW, max_age_s=10.0, clock_skew_s=2.0)
    assert "this daemon's" not in caught.value.reason  # a command that waited, not a clock


def test_age_check_names_a_sent_at_in_the_future() -> None:
    with pytest.raises(StaleCommandError) as caught:
        check_command_age(NOW + 30.0, "ahead", now=NOW, max_age_s=10.0, clock_skew_s=2.0)
    assert "is 30.0 s in the future" in caught.value.reason
    assert "2 s allowed for clock skew" in caught.value.reason
    with pytest.raises(StaleCommandError) as caught:
        check_command_age(1e308, None, now=NOW, max_age_s=10.0, clock_skew_s=2.0)
    assert caught.value.reason.startswith("sent_at 1e+308 is 1e+308 s in the future")
    assert len(caught.value.reason) < 200


def test_every_error_has_an_outcome() -> None:
    assert outcome_of(CommandError("bad")) == "rejected"
    assert outcome_of(StaleCommandError("old")) == "stale"
    assert outcome_of(DuplicateCommandError("again")) == "duplicate"
    assert outcome_of(DroppedCommandError("full", None)) == "dropped_queue_full"
    assert outcome_of(DroppedCommandError("late", None, expired=True)) == "expired"


def test_summary_message_says_how_many_and_why() -> None:
    summary = json.loads(encode_error_summary(17, 50.0))
    assert summary["count"] == 17
    assert summary["reason"].startswith("17 more commands dropped")
    assert "50 per second" in summary["reason"]
    assert summary["request_id"] is None


def test_persistence_defaults() -> None:
    mqtt = Settings().mqtt
    assert mqtt.session_expiry_s == 300
    assert mqtt.command_max_age_s == 10.0
    assert mqtt.command_clock_skew_s == 2.0
    assert mqtt.command_queue_size == 64
    assert mqtt.error_replies_per_s == 50.0
    assert mqtt.client_id is None


def test_session_expiry_zero_and_no_age_limit_are_allowed() -> None:
    mqtt = Settings.model_validate(
        {"mqtt": {"session_expiry_s": 0, "command_max_age_s": None}}
    ).mqtt
    assert (mqtt.session_expiry_s, mqtt.command_max_age_s) == (0, None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("session_expiry_s: -1", r"mqtt\.session_expiry_s: Input should be greater than or equal"),
        (
            f"session_expiry_s: {MAX_SESSION_EXPIRY_S + 1}",
            r"mqtt\.session_expiry_s: Input should be less than or equal",
        ),
        ("session_expiry_s: 1.5", r"mqtt\.session_expiry_s: Input should be a valid integer"),
        ("command_max_age_s: 0", r"mqtt\.command_max_age_s: Input should be greater than 0"),
        ("command_clock_skew_s: -1", r"mqtt\.command_clock_skew_s: Input should be greater"),
        ("command_queue_size: 0", r"mqtt\.command_queue_size: Input should be greater"),
        ("error_replies_per_s: 0", r"mqtt\.error_replies_per_s: Input should be greater than 0"),
        ("client_id: ''", r"mqtt\.client_id: String should have at least 1 character"),
        ("sesion_expiry_s: 5", r"mqtt\.sesion_expiry_s: Extra inputs are not permitted"),
    ],
)
def test_bad_persistence_keys_name_key_and_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"mqtt:\n  {text}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"bad\.yaml: {message}"):
        load_settings(path)
