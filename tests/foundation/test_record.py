"""``autopilot_ops.record``: value classes that behave as the dataclasses they replace in the pilot's closure
(construction, defaults, repr, equality, hashing, frozen-ness), checked side by side with real dataclasses."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from autopilot_ops.record import FrozenInstanceError, Record, field


class Point(Record):
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)
    note: str = field(default_factory=str, repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class DataPoint:
    x: int
    y: int = 0
    tags: list[str] = dataclasses.field(default_factory=list)
    note: str = dataclasses.field(default_factory=str, repr=False, compare=False)


class Counter(Record, frozen=False):
    name: str
    seen: dict[str, int] = field(default_factory=dict)


class Labelled(Point):
    label: str = "none"


def test_construction_defaults_and_factories_as_a_dataclass():
    for args, kwargs in (((1,), {}), ((1, 2), {}), ((), {"x": 1, "y": 2}), ((1,), {"tags": ["a"], "note": "n"})):
        ours, theirs = Point(*args, **kwargs), DataPoint(*args, **kwargs)
        assert vars(ours) == vars(theirs) and list(vars(ours)) == ["x", "y", "tags", "note"]
        assert repr(ours) == repr(theirs).replace("DataPoint", "Point")
    assert Point(1).tags is not Point(1).tags  # one list per instance
    assert Point.y == 0 and not hasattr(Point, "tags")  # a plain default stays on the class, a factory does not


def test_equality_and_hash_follow_the_compared_fields():
    assert Point(1, 2) == Point(1, 2, note="other") and Point(1, 2) != Point(1, 3)
    assert hash(Point(1, 2, ("a",))) == hash(Point(1, 2, ("a",), "other"))
    assert Point(1) != DataPoint(1) and Point(1) != (1, 0, [], "")  # another class is never equal
    assert Labelled(1) != Point(1)
    with pytest.raises(TypeError, match="unhashable"):
        hash(Point(1))  # its list is unhashable, as in a frozen dataclass
    assert Counter("a") == Counter("a")
    with pytest.raises(TypeError, match="unhashable"):
        hash(Counter("a"))  # a mutable record is unhashable, as a dataclass with eq=True


def test_a_record_is_frozen_unless_declared_mutable():
    point = Point(1)
    with pytest.raises(FrozenInstanceError, match="cannot assign to field 'x'"):
        point.x = 2
    with pytest.raises(AttributeError, match="cannot delete field 'y'"):
        del point.y
    counter = Counter("a")
    counter.name = "b"
    counter.seen["x"] = 1
    assert counter == Counter("b", {"x": 1})


def test_a_subclass_adds_its_fields_after_its_bases():
    labelled = Labelled(1, 2, label="L")
    assert list(vars(labelled)) == ["x", "y", "tags", "note", "label"]
    assert repr(labelled) == "Labelled(x=1, y=2, tags=[], label='L')"


def test_wrong_arguments_are_named():
    with pytest.raises(TypeError, match=r"Point\(\) missing required argument: 'x'"):
        Point()
    with pytest.raises(TypeError, match=r"Point\(\) got an unexpected keyword argument 'z'"):
        Point(1, z=3)
    with pytest.raises(TypeError, match=r"Point\(\) got multiple values for argument 'x'"):
        Point(1, x=2)
    with pytest.raises(TypeError, match=r"Point\(\) takes 4 arguments but 5 were given"):
        Point(1, 2, [], "", 5)


def test_a_field_without_default_after_one_with_is_refused():
    with pytest.raises(TypeError, match="field 'b' without a default follows fields with one"):

        class Bad(Record):
            a: int = 0
            b: int


def test_records_pickle():
    point = Point(1, 2, ["a"], "n")
    again = pickle.loads(pickle.dumps(point))
    assert again == point and again.note == "n"
