"""The Kubernetes label-selector parser: grammar, key/value rules, matching semantics, and that
arbitrary input only ever raises SelectorError (the adapter's 400), never anything else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.adapter.selectors import Op, Requirement, Selector, SelectorError, parse_selector

LABELS = {"app": "tfs", "model": "resnet", "example.com/tier": "gpu", "gen": "7", "empty": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("app=tfs", True),
        ("app==tfs", True),
        ("app=other", False),
        ("app!=other", True),
        ("missing!=x", True),  # != matches when the key is absent
        ("app in (x,tfs)", True),
        ("app in (x,y)", False),
        ("app notin (x)", True),
        ("missing notin (x)", True),
        ("app", True),
        ("!app", False),
        ("!missing", True),
        ("gen>6", True),
        ("gen<7", False),
        ("app>1", False),  # not an integer label
        ("example.com/tier=gpu", True),
        ("  app  in ( x , tfs ) ,  !missing , model = resnet ", True),
        ("empty=", True),
        ("app=tfs,model=bert", False),
        ("empty in ()", True),  # apimachinery: `in ()` is the set {""}
    ],
)
def test_grammar_and_matching(text: str, expected: bool) -> None:
    assert parse_selector(text).matches(LABELS) is expected


@pytest.mark.parametrize(
    "text",
    [
        "=x", "app in (a", "app notin a", "a b", "a==b==c", "-bad=x", "bad-=x", "a=b,", ",a=b", "a=!b",
        "x/y/z=1", "/a=b", "Exa_mple.com/a=b", "a>b", "a in (x y)", "a=" + "v" * 64, "k" * 64, "!", "!a=b",
        "a in", "(", "a,,b", "in=x", "a=b)", "a=in", "a in (notin)",
    ],
)  # fmt: skip
def test_malformed(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(text)


def test_string_and_label_selector_forms() -> None:
    sel = parse_selector("b in (y,x), a=1, !c, d, e!=2, f notin (z)")
    assert str(sel) == "b in (x,y),a=1,!c,d,e!=2,f notin (z)"
    assert sel.as_label_selector() == {
        "matchLabels": {"a": "1"},
        "matchExpressions": [
            {"key": "b", "operator": "In", "values": ["x", "y"]},
            {"key": "c", "operator": "DoesNotExist"},
            {"key": "d", "operator": "Exists"},
            {"key": "e", "operator": "NotIn", "values": ["2"]},
            {"key": "f", "operator": "NotIn", "values": ["z"]},
        ],
    }
    assert parse_selector(None).as_label_selector() is None


# ------------------------------------------------------------------------------------ properties
_name = st.from_regex(r"\A[a-z0-9]([a-z0-9._-]{0,10}[a-z0-9])?\Z").filter(lambda s: s not in ("in", "notin"))
_key = st.one_of(_name, st.builds(lambda p, n: f"{p}.io/{n}", st.from_regex(r"\A[a-z]{1,8}\Z"), _name))
_value = st.one_of(st.just(""), _name)
_ops = st.sampled_from(list(Op))


@st.composite
def requirements(draw: st.DrawFn) -> Requirement:
    key, op = draw(_key), draw(_ops)
    if op in (Op.EXISTS, Op.DOES_NOT_EXIST):
        return Requirement(key, op)
    if op in (Op.GREATER_THAN, Op.LESS_THAN):
        return Requirement(key, op, (str(draw(st.integers(-5, 50))),))
    if op in (Op.IN, Op.NOT_IN):
        return Requirement(key, op, tuple(sorted(set(draw(st.lists(_name, min_size=1, max_size=3))))))
    return Requirement(key, op, (draw(_value),))


def reference_match(r: Requirement, labels: dict[str, str]) -> bool:
    """apimachinery's Requirement.Matches, written independently."""
    has = r.key in labels
    if r.op is Op.EXISTS:
        return has
    if r.op is Op.DOES_NOT_EXIST:
        return not has
    if r.op in (Op.EQUALS, Op.DOUBLE_EQUALS, Op.IN):
        return has and labels[r.key] in r.values
    if r.op in (Op.NOT_EQUALS, Op.NOT_IN):
        return (not has) or labels[r.key] not in r.values
    try:
        lv = int(labels[r.key]) if has else None
    except ValueError:
        return False
    if lv is None:
        return False
    return lv > int(r.values[0]) if r.op is Op.GREATER_THAN else lv < int(r.values[0])


@settings(max_examples=150, deadline=None)
@given(
    reqs=st.lists(requirements(), min_size=1, max_size=4),
    labels=st.dictionaries(_key, st.one_of(_value, st.integers(0, 50).map(str)), max_size=5),
    spaces=st.sampled_from(["", " ", "  "]),
)
def test_render_parse_roundtrip_and_matching(reqs: list[Requirement], labels: dict[str, str], spaces: str) -> None:
    text = f"{spaces},{spaces}".join(str(r) for r in reqs)
    sel = parse_selector(text)
    assert sel.matches(labels) == all(reference_match(r, labels) for r in reqs)
    assert parse_selector(str(sel)) == sel
    # Keys from the matched labels: a selector of their exact values always matches them.
    if labels:
        exact = Selector(tuple(Requirement(k, Op.EQUALS, (v,)) for k, v in labels.items()))
        assert parse_selector(str(exact)).matches(labels)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40) | st.text(alphabet="ab=!,() in/.-_<>1 ", max_size=40))
def test_arbitrary_text_only_raises_selector_error(text: str) -> None:
    try:
        sel = parse_selector(text)
    except SelectorError:
        return
    assert isinstance(sel, Selector)
    assert parse_selector(str(sel)) == sel  # whatever parses renders back to itself
