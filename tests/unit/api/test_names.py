"""kube's name, label and annotation rules with their exact messages."""

from __future__ import annotations

import pytest

from pocketkube.api import names

LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)


@pytest.mark.parametrize(
    ("fn", "value", "expected"),
    [
        (names.is_dns1123_label, "web-1", []),
        (names.is_dns1123_label, "Web", [LABEL_MSG]),
        (names.is_dns1123_label, "a" * 64, ["must be no more than 63 characters"]),
        (names.is_dns1123_subdomain, "a.b-c.d", []),
        (names.is_dns1123_subdomain, "a_b", [SUBDOMAIN_MSG]),
        (names.is_dns1123_subdomain, "a" * 254, ["must be no more than 253 characters"]),
        (names.is_dns1035_label, "1abc", [DNS1035_MSG]),
        (names.is_dns1035_label, "abc", []),
        (names.is_valid_port_name, "http", []),
        (names.is_valid_port_name, "123", ["must contain at least one letter (a-z)"]),
        (names.is_valid_path_segment_name, "a/b", ["may not contain '/'"]),
        (names.is_valid_path_segment_name, "..", ["may not be '..'"]),
        (names.is_config_map_key, "..a", ["must not start with '..'"]),
    ],
)
def test_validators(fn: object, value: str, expected: list[str]) -> None:
    assert fn(value) == expected  # type: ignore[operator]


def test_qualified_name() -> None:
    assert names.is_qualified_name("example.com/MyName") == []
    assert names.is_qualified_name("app") == []
    assert names.is_qualified_name("/a") == ["prefix part must be non-empty"]
    assert names.is_qualified_name("Example.com/a") == ["prefix part " + SUBDOMAIN_MSG]
    errs = names.is_qualified_name("a/b/c")
    assert errs[0].startswith("a qualified name must consist of alphanumeric characters")
    assert errs[0].endswith("with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')")
    assert names.is_qualified_name("a/")[0] == "name part must be non-empty"


def test_label_value() -> None:
    assert names.is_valid_label_value("") == []
    assert names.is_valid_label_value("my_value.1") == []
    assert names.is_valid_label_value("-x") == [
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
        "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
        "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
    ]


def test_name_rules_per_resource() -> None:
    assert names.name_validator("", "Namespace") is names.name_is_dns_label
    assert names.name_validator("", "Service") is names.name_is_dns1035_label
    assert names.name_validator("rbac.authorization.k8s.io", "Role") is names.name_is_path_segment
    assert names.name_validator("apps", "Deployment") is names.name_is_dns_subdomain
    assert names.name_validator("example.com", "Widget") is names.name_is_dns_subdomain
    # a generateName may end with '-': the random suffix follows
    assert names.name_is_dns_label("web-", True) == []
    assert names.name_is_dns_label("web-", False) == [LABEL_MSG]


def test_generate_name() -> None:
    name = names.generate_name("web-")
    assert name.startswith("web-") and len(name) == 9
    assert all(c in names.GENERATE_NAME_ALPHABET for c in name[4:])
    assert len(names.generate_name("x" * 100)) == 63
