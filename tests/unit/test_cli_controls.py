"""The queue-control commands' arguments: bad input exits 2 naming the option."""

from __future__ import annotations

import pytest

from queuekit.cli import build_parser
from queuekit.cli.controls import parse_duration


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["clean", "bank-sync", "--state", "finished"], "argument --state: invalid choice"),
        (["clean", "bank-sync", "--older-than", "1 hour"], "argument --older-than: must be a"),
        (["clean", "bank-sync", "--older-than=-1h"], "argument --older-than: must be a"),
        (["clean", "bank-sync", "--limit", "-3"], "argument --limit: must be >= 0, got -3"),
        (["clean", "bank-sync", "--limit", "many"], "argument --limit: must be an integer"),
        (["remove", "bank-sync"], "job_id"),
        (["pause"], "queue"),
    ],
)
def test_bad_arguments_are_refused(args: list[str], message: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("text", "ms"), [
    ("500", 500), ("500ms", 500), ("45s", 45_000), ("15m", 900_000), ("1h", 3_600_000),
    ("2d", 172_800_000), ("1w", 604_800_000), ("0", 0),
])
def test_durations(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


def test_clean_defaults() -> None:
    args = build_parser().parse_args(["clean", "bank-sync"])
    assert (args.state, args.older_than, args.limit) == ("completed", 0, 1000)

