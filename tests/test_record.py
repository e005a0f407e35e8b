"""hasthook.record: the part of dataclasses the hook's classes use, without its imports."""

from __future__ import annotations

import pytest

from hasthook.record import Record, fresh


class Step(Record):
    name: str
    argv: list[str] = fresh(list)
    ok: bool | None = None


class Point(Record, frozen=True):
    x: int
    y: int = 0


class Named(Step):
    note: str = ""


def test_positional_keyword_and_defaults():
    assert Step("a").as_dict() == {"name": "a", "argv": [], "ok": None}
    assert Step("a", ["x"], True) == Step(name="a", ok=True, argv=["x"])
    assert Step("a").argv is not Step("a").argv  # fresh(list): one list per instance
    assert repr(Step("a", ok=False)) == "Step(name='a', argv=[], ok=False)"


@pytest.mark.parametrize("args,kwargs,why", [
    ((), {}, "missing argument 'name'"),
    (("a", [], None, "extra"), {}, "takes 3 arguments, 4 given"),
    (("a",), {"name": "b"}, "unexpected or repeated argument(s) 'name'"),
    (("a",), {"colour": "red"}, "unexpected or repeated argument(s) 'colour'"),
])
def test_bad_arguments_are_type_errors(args, kwargs, why):
    with pytest.raises(TypeError, match=why.replace("(", r"\(").replace(")", r"\)")):
        Step(*args, **kwargs)


def test_equality_is_by_type_and_fields():
    assert Step("a") != Step("b")
    assert Step("a") != Named("a")
    assert Named("a", note="n").as_dict() == {"name": "a", "argv": [], "ok": None, "note": "n"}


def test_frozen_refuses_assignment_and_hashes_by_fields():
    p = Point(1)
    with pytest.raises(AttributeError, match="frozen Point"):
        p.x = 2
    assert {Point(1, 0), Point(1)} == {Point(1)}
    assert p.replace(y=5) == Point(1, 5) and p == Point(1, 0)


def test_mutable_records_are_unhashable_as_with_dataclasses():
    s = Step("a")
    s.ok = True
    assert s.ok is True
    with pytest.raises(TypeError):
        hash(s)


def test_as_dict_copies_nested_records_and_containers():
    outer = Step("outer", argv=[Point(1, 2)])  # any value may be a record
    d = outer.as_dict()
    assert d == {"name": "outer", "argv": [{"x": 1, "y": 2}], "ok": None}
    d["argv"].append("changed")
    assert outer.argv == [Point(1, 2)]
