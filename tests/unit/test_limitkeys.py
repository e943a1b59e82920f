"""Normalising limit values and hiding them: what every counter counts a request as."""

from __future__ import annotations

import pytest
import yaml

from gateway.environment import load_settings
from gateway.limitkeys import LimitKeys, field_kind, normalise


@pytest.mark.parametrize(("raw", "expected"), [
    ("ada@example.com", "ada@example.com"),
    ("  Ada@Example.COM\t\n", "ada@example.com"),
    ("ADA@EXAMPLE.COM ", "ada@example.com"),
    ("\uff41\uff44\uff41@example.com", "ada@example.com"),  # full-width letters fold under NFKC
    ("victim@example.com\u200b", "victim@example.com"),  # zero-width space
    ("\ufeffvictim@example.com", "victim@example.com"),  # BOM
    ("vic\u200dtim@exa\u00admple.com", "victim@example.com"),  # ZWJ, soft hyphen
    ("\u2060 victim@example.com \u200e", "victim@example.com"),  # word joiner, LRM
])
def test_emails_lose_format_characters_and_are_trimmed_and_lower_cased(raw, expected):
    assert normalise("email", raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("+1 (555) 010-0000", "15550100000"),
    ("+15550100000", "15550100000"),
    ("1 555 010 0000", "15550100000"),
    ("  +1.555.010.0000 ", "15550100000"),
    ("\uff11\uff15\uff15\uff15\uff10\uff11\uff10\uff10\uff10\uff10\uff10", "15550100000"),
    ("\u0661\u0665\u0665\u0665\u0660\u0661\u0660\u0660\u0660\u0660\u0660", "15550100000"),
    ("555-0100 ext. 7", "55501007"),
    ("00 44 20 7946 0000", "00442079460000"),
    ("\u00b2\u00b3", "23"),  # superscripts fold to digits under NFKC
    ("\u216b", None),  # a Roman numeral folds to letters: nothing is left
])
def test_phones_keep_only_their_decimal_digits_in_any_script(raw, expected):
    assert normalise("phone", raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "\u200b", "\ufeff\u200d", "\t\n"])
def test_a_value_empty_after_normalising_is_absent(raw):
    assert normalise("email", raw) is None
    assert normalise("phone", raw) is None
    assert normalise("coupon", raw) is None


def test_a_phone_with_no_digits_is_absent_not_a_shared_bucket():
    assert normalise("phone", "n/a") is None
    assert normalise("phone", "+") is None


def test_the_field_kind_is_read_from_the_leaf_of_a_dotted_name():
    assert field_kind("customer.email") == "email"
    assert field_kind("lead.phone_number") == "phone"
    assert field_kind("email.coupon") == "other"
    assert normalise("customer.email", " A@B.C ") == "a@b.c"
    assert normalise("lead.phone_number", "+1 555") == "1555"
    assert normalise("coupon", "  Ab C ") == "Ab C"  # other fields: cleaned and trimmed only


def rule(per: str):  # type: ignore[no-untyped-def]
    text = yaml.safe_dump({"routes": [{"name": "r", "path": "/r", "methods": ["POST"],
                                       "limits": [{"per": per, "rate": "5/hour"}]}]})
    return load_settings({}, text=text, source="test").policy.routes[0].limits[0]


def test_identities_hide_every_value_and_depend_on_the_key():
    keys, other = LimitKeys(b"k" * 32), LimitKeys(b"j" * 32)
    email = rule("body:email")
    found = keys.identity(email, client="public", ip_key="10.0.0.1",
                          values={"body:email": "ada@example.com"})
    assert found is not None and "ada" not in found and len(found) == 32
    assert found != other.identity(email, client="public", ip_key="10.0.0.1",
                                   values={"body:email": "ada@example.com"})
    assert keys.identity(email, client="public", ip_key="10.0.0.1", values={}) is None
    ip = keys.identity(rule("ip"), client="public", ip_key="203.0.113.9", values={})
    assert ip is not None and "203" not in ip
    assert keys.identity(rule("client"), client="pricing", ip_key="x", values={}) == "pricing"
    assert keys.identity(rule("global"), client="pricing", ip_key="x", values={}) == "all"


def test_cooldown_keys_are_per_route_and_tuple_and_hide_the_values():
    keys = LimitKeys(b"k" * 32)
    assert keys.cooldown("catalog", ()) == "rg/cooldown/catalog"
    one = keys.cooldown("mail-in", ("ada@example.com", None))
    assert "ada" not in one and one.startswith("rg/cooldown/mail-in/")
    assert one != keys.cooldown("mail-in", ("ada@example.com", "15550100000"))
    assert one != keys.cooldown("mail-in", (None, "ada@example.com"))
    assert one == keys.cooldown("mail-in", ("ada@example.com", None))
