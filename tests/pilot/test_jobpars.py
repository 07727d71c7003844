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
