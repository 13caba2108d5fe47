"""Label and field selector parsing and matching, as kube-apiserver does it."""

import pytest

from pocketkube.api.errors import BadRequest
from pocketkube.api.selectors import parse_field_selector, parse_label_selector, selector_from_spec


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "web"}, True),
        ("app=web", {"app": "db"}, False),
        ("app!=web", {}, True),
        ("app!=web", {"app": "web"}, False),
        ("tier in (a, b)", {"tier": "b"}, True),
        ("tier in (a,b)", {"tier": "c"}, False),
        ("tier notin (a,b)", {"tier": "c"}, True),
        ("tier notin (a,b)", {}, True),
        ("tier", {"tier": ""}, True),
        ("!tier", {"tier": "x"}, False),
        ("!tier", {}, True),
        ("app=web,env=prod", {"app": "web", "env": "prod"}, True),
        ("app=web,env=prod", {"app": "web"}, False),
        ("example.com/role=db", {"example.com/role": "db"}, True),
        ("", {"x": "y"}, True),
    ],
)
def test_label_selector(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(selector).matches(labels) is expected


@pytest.mark.parametrize("bad", ["app in (", "in (a)", "a=b=c,", "app=-bad-", "a b", "x in ()"])
def test_bad_label_selectors_are_400(bad: str) -> None:
    with pytest.raises(BadRequest):
        parse_label_selector(bad)


def test_structured_selector() -> None:
    sel = selector_from_spec({"matchLabels": {"app": "web"},
                              "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]})
    assert sel.matches({"app": "web", "tier": "a"})
    assert not sel.matches({"app": "web"})
    assert selector_from_spec(None).matches({}) is False
    assert selector_from_spec({}).matches({"a": "b"}) is True


def test_field_selector() -> None:
    sel = parse_field_selector("involvedObject.name=demo,status.phase!=Running")
    assert sel.matches({"involvedObject.name": "demo", "status.phase": "Pending"})
    assert not sel.matches({"involvedObject.name": "demo", "status.phase": "Running"})
    assert parse_field_selector(r"metadata.name=a\,b").matches({"metadata.name": "a,b"})
    with pytest.raises(BadRequest):
        parse_field_selector("nonsense")
