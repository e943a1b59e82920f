"""redact: masking stays linear on hostile text and masks what the email pattern matches."""

from __future__ import annotations

import json
import logging
import random
import re
import time

import pytest

from gateway.logsetup import JsonFormatter
from gateway.redact import hide, mask, mask_path

# The email pattern as a regex: what the masker must find, without its
# quadratic backtracking. Only ever applied here to short strings.
EMAIL = re.compile(r"[\w.!#$%&'*+=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
PHONE = re.compile(r"(?<![\w.:])\+?\(?\d[\d\s()-]{6,}\d(?![\w.:])")
DOTTED_PHONE = re.compile(r"(?<![\w.])(?:\+?\d{1,3}\.)?\d{3}\.\d{3}\.\d{4}(?![\w.])")
KIB = 1024


def reference_mask(text: str) -> str:
    def phone(match: re.Match[str]) -> str:
        found = match.group(0)
        digits = sum(c.isdigit() for c in found)
        is_date = re.fullmatch(r"\d{4}-\d{2}-\d{2}", found) is not None
        return "[phone]" if 8 <= digits <= 15 and not is_date else found

    return PHONE.sub(phone, DOTTED_PHONE.sub("[phone]", EMAIL.sub("[email]", text)))


@pytest.mark.parametrize("text", [
    "a@b.c.@d.e", "x@y.z@w.v", "..@a.b", "a@b.c.d.", "a@-.-", "@a.b", "a@.b", "a@b",
    "ü@ö.ä", "a@b.c/d@e.f?g@h.i", "a b@c.d e", "+1 555 010 0000@x.io", "a@@b.c", "a@b..c.d",
    "tel:+15550100000 mail:a@b.cd", "a%40b.c", "1@2.3", "_@_._",
])
def test_tricky_texts_are_masked_as_the_email_pattern_would(text):
    assert mask(text) == reference_mask(text)


def test_random_texts_are_masked_as_the_email_pattern_would():
    rng = random.Random(20261129)
    alphabet = "ab1_.-@+/ :é%!()"
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        assert mask(text) == reference_mask(text), text


def adversarial(size: int) -> dict[str, str]:
    half = size // 2
    return {
        "letters@letters": "/" + "a" * half + "@" + "b" * (size - half - 2),
        "dotted local part then @": "/" + "a." * (half - 1) + "@",
        "many @": "/" + "a@" * half,
        "many emails": "/" + "ab@cd.ef/" * (size // 9),
        "digits then a letter": "/" + "1" * (size - 2) + "a",
        "spaced digits then a letter": "/" + "1 " * (half - 1) + "a",
        "dashed digits then a letter": "/" + "1-" * (half - 1) + "a",
        "bracketed digits then a letter": "/" + "(1" * (half - 1) + "a",
        "dotted digits": "/" + "1." * (half - 1) + "a",
    }


@pytest.mark.parametrize("name", adversarial(14 * KIB))
def test_a_14_kib_adversarial_text_masks_in_well_under_a_tenth_of_a_second(name):
    text = adversarial(14 * KIB)[name]
    started = time.perf_counter()
    mask(text)
    assert time.perf_counter() - started < 0.1


@pytest.mark.parametrize("name", adversarial(64 * KIB))
def test_a_64_kib_adversarial_text_masks_in_well_under_half_a_second(name):
    text = adversarial(64 * KIB)[name]
    started = time.perf_counter()
    mask(text)
    assert time.perf_counter() - started < 0.5


def test_an_access_line_with_a_14_kib_adversarial_path_is_written_quickly():
    formatter = JsonFormatter(("test-api-key-5f1c",))
    path = "/" + "a" * 7 * KIB + "@" + "b" * 7 * KIB
    record = logging.LogRecord("gateway.access", logging.INFO, __file__, 1, "request", None,
                               None)
    record.access = {"path": path, "status": 404}
    started = time.perf_counter()
    line = formatter.format(record)
    assert time.perf_counter() - started < 0.1
    assert json.loads(line)["path"] == path  # no domain with a dot: not an email


def test_a_masked_email_keeps_the_text_around_it():
    assert mask("/x/" + "a" * 5000 + "@example.com/y") == "/x/[email]/y"


def test_hide_replaces_every_occurrence_of_every_secret():
    assert hide("k=abcdefgh;k=abcdefgh;s=zyxwvuts", ("abcdefgh", "zyxwvuts")) == \
        "k=[secret];k=[secret];s=[secret]"


@pytest.mark.parametrize(("path", "logged"), [
    ("/b/catalog/victim%40example.com", "/b/catalog/[email]"),
    ("/b/catalog/victim%2540example.com", "/b/catalog/[email]"),
    ("/b/catalog/%2B1%20555%20010%200000", "/b/catalog/[phone]"),
    ("/b/catalog/categories", "/b/catalog/categories"),
    ("/b/catalog/caf%C3%A9", "/b/catalog/caf%C3%A9"),  # nothing to mask: logged as it came
])
def test_a_path_is_masked_in_its_decoded_form_too(path, logged):
    assert mask_path(path) == logged
