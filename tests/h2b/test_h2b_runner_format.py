"""The fixture folder format of ``callbridge h2b-test`` (pure parts: loading and judging)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from callbridge.cli.h2b_test import CODECS, FixtureError, bots_url, judge, load_fixtures

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "h2b"

TEST = """
audio = "a.alaw"
grammars = ["builtin:speech/spelling/mixed?regex=[a-z]{2}[0-9]{9}[a-z]{2}"]
skip = true
[params]
recognition_mode = "hotword"
hotword_max_duration = 10000
[expected]
completion_cause = "Success"
[expected.interpretation]
type = "builtin:speech/spelling/mixed"
value = "le137137866cn"
"""


def test_our_fixtures_load_and_are_small() -> None:
    fixtures = load_fixtures(FIXTURES)
    assert 50 <= len(fixtures) <= 60
    size = sum(p.stat().st_size for p in FIXTURES.iterdir())
    assert size < 2_200_000
    groups = {f.name.split("-")[0] for f in fixtures}
    assert groups == {
        "address", "boolean", "date", "digits", "keywords", "noinput", "nomatch", "phone",
        "spelled", "transcribe", "zipcode",
    }  # fmt: skip
    assert {f.codec for f in fixtures} == {"linear", "g711a", "g711u"}
    for f in fixtures:
        assert f.audio.is_file(), f.name
        assert f.params["recognition_mode"] == "normal"
        if f.cause == "Success":
            assert f.interpretation is not None
            assert f.interpretation[0] == f.grammars[0].split("?")[0]
        else:
            assert f.interpretation is None and f.cause in {"NoMatch", "NoInputTimeout"}
    date = next(f for f in fixtures if f.name.startswith("date-"))
    assert date.interpretation is not None
    assert set(date.interpretation[1]) == {"day", "month", "year", "valid"}


def test_the_sdk_sample_format(tmp_path: Path) -> None:
    (tmp_path / "parcel.test").write_text(TEST)
    (fixture,) = load_fixtures(tmp_path)
    assert fixture.codec == CODECS["alaw"] == "g711a"
    assert fixture.skip and fixture.params["hotword_max_duration"] == 10000
    assert fixture.interpretation == ("builtin:speech/spelling/mixed", "le137137866cn")
    (named,) = load_fixtures(tmp_path, ["parcel"])  # named explicitly: not skipped
    assert not named.skip
    assert load_fixtures(tmp_path, patterns=["other*"]) == []


def test_judging() -> None:
    (fixture,) = [f for f in load_fixtures(FIXTURES) if f.name.startswith("boolean-01")]
    assert fixture.interpretation == ("builtin:speech/boolean", True)
    assert judge(fixture, "Success", ("builtin:speech/boolean", True))[0]
    assert not judge(fixture, "Success", ("builtin:speech/boolean", False))[0]
    assert not judge(fixture, "Success", ("builtin:speech/keywords", True))[0]
    assert not judge(fixture, "NoMatch", None)[0]
    assert not judge(fixture, "Success", None)[0]
    (silence,) = [f for f in load_fixtures(FIXTURES) if f.name.startswith("noinput")]
    assert judge(silence, "NoInputTimeout", None) == (True, "NoInputTimeout")
    ok, why = judge(silence, "NoInputTimeout", ("builtin:speech/boolean", True))
    assert not ok and "without interpretation" in why


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("audio = 'a.wav'\ngrammars = []\n[expected]\ncompletion_cause = 'Success'\n", "extension"),
        ("grammars = []\n", "missing key"),
        ("audio = 'a.pcm'\ngrammars = [1]\n[expected]\ncompletion_cause = 'Success'\n", "list"),
        ("audio = \n", "a.test"),
    ],
)
def test_bad_test_files_are_named(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "a.test").write_text(text)
    with pytest.raises(FixtureError, match=problem):
        load_fixtures(tmp_path)


def test_generated_files_are_valid_toml() -> None:
    for path in FIXTURES.glob("*.test"):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        assert (FIXTURES / data["audio"]).is_file()


def test_url_like_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UHLIVE_API_URL", raising=False)
    assert bots_url(None) == "ws://127.0.0.1:8080/bots"
    monkeypatch.setenv("UHLIVE_API_URL", "wss://example.test:8443/any/path")
    assert bots_url(None) == "wss://example.test:8443/bots"
    assert bots_url("ws://h/bots") == "ws://h/bots"


def test_missing_sdk_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from callbridge.cli.main import main

    monkeypatch.setitem(sys.modules, "uhlive", None)  # import uhlive... raises ImportError
    monkeypatch.setitem(sys.modules, "uhlive.stream", None)
    monkeypatch.setitem(sys.modules, "uhlive.stream.recognition", None)
    assert main(["h2b-test", str(FIXTURES), "--token", "x"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "callbridge: h2b-test needs the uhlive SDK: pip install 'callbridge[h2b-test]' "
        "(uhlive==2.1.0)"
    )
