"""jobPars splitting: the same words and errors as ``shlex.split``, by a linear-time splitter."""

from __future__ import annotations

import random
import shlex

import pytest

from autopilot_ops.pilot.jobpars import split

CASES = [
    "",
    "   ",
    "--events 10 --name 'a b'",
    "''",
    "a '' b",
    '"" x',
    "a\\ b c",
    "'it''s'",
    '"say \\"hi\\" \\\\ \\n"',
    "mixed'sq'\"dq\"\\e",
    "tab\tand\nnewline\r\nend",
    "  leading and trailing  ",
    "trailing\\ ",
    "--inputFiles=a.root,b.root --x=\"$HOME\" '#not a comment'",
    "'\\' \"'\"",
]


@pytest.mark.parametrize("text", CASES)
def test_same_words_as_shlex(text):
    assert split(text) == shlex.split(text)


@pytest.mark.parametrize("text", ["'open", '"open', "end\\", '"esc\\', "a 'b\\", 'x"a\\\\\\'])
def test_same_errors_as_shlex(text):
    with pytest.raises(ValueError) as expected:
        shlex.split(text)
    with pytest.raises(ValueError) as got:
        split(text)
    assert str(got.value) == str(expected.value)


def test_random_inputs_agree_with_shlex():
    alphabet = ["a", "b", " ", "\t", "\n", "'", '"', "\\", "x y", "$", "#"]
    rng = random.Random(10)
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        try:
            expected: object = shlex.split(text)
        except ValueError as exc:
            expected = ("error", str(exc))
        try:
            got: object = split(text)
        except ValueError as exc:
            got = ("error", str(exc))
        assert got == expected, text


def test_nul_is_refused():
    with pytest.raises(ValueError, match="NUL"):
        split("a\x00b")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("--inputFiles=" + ",".join(f"EVNT.{i:08d}.pool.root.1" for i in range(40_000)), 1),  # one 1 MB word
        ("'" + "a b " * 250_000 + "'", 1),  # one 1 MB quoted word
        ("--maxEvents=100 " * 62_500, 62_500),  # many short words
    ],
    ids=["one_word", "one_quoted_word", "many_words"],
)
def test_a_megabyte_splits_without_shlex(text, words, monkeypatch):
    """``shlex`` reads a character at a time and grows with the square of the length (issue 10: 21 s for 1 MB), so
    the splitter must not go through it; its speed is measured in ``bench/bench_jobpars.py`` (0.1 s for 1 MB)."""

    def refused(*args, **kwargs):
        raise AssertionError("shlex used")

    monkeypatch.setattr(shlex, "split", refused)
    monkeypatch.setattr(shlex.shlex, "__init__", refused)
    assert len(text) >= 1_000_000
    assert len(split(text)) == words
