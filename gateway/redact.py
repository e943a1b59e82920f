r"""Masking emails and phones, and hiding secret values, in text that goes to a log.

The text is often the caller's (a request path, up to the 16 KiB head
limit), so every step here is linear in its length: a pattern that
backtracks over caller text is a way to freeze a worker.

Emails were `[\w.!#$%&'*+=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+` applied with
`re.sub`. That regex is quadratic: tried from every position of a long
local part, it rescans the whole domain each time before failing. Measured
on the development VM (2 shared cores, CPython 3.11; the old figures vary
with load, best of several runs for the new):

    text                      size     old pattern     this module
    /a…a@b…b                  14 KiB   1.4 - 2.4 s     0.4 ms
    /a…a@b…b                  64 KiB   28 - 44 s       1.8 ms
    /a.a.a…@                  14 KiB   0.34 - 0.39 s   0.5 ms
    /a.a.a…@                  64 KiB   6.7 - 9.8 s     2.4 ms

`_mask_emails` finds exactly what that `re.sub` found, without it: only an
`@` followed by a domain can end a local part; from each, the local part is
the run of local-part characters before it (matched on the reversed text,
so read forwards once) and the domain a possessive match after it. Runs
before and after different `@`s do not overlap, so each character is read
a bounded number of times.

The phone patterns are kept: `_DOTTED_PHONE` has no unbounded repetition,
and `_PHONE` is linear, because within one run of phone characters
(`[\d\s()-]`) only a few starting points (those within 8 characters of
the run's last "digit, then separator", and the first digit after it) can
fail after scanning the run; any earlier start succeeds, and the search
resumes at the end of its match. Measured on 64 KiB of digit runs, `1 1 1…`,
`1-1-1…` and `(1(1…` ending in a letter: 4 - 6 ms (1.0 - 1.4 ms at 14 KiB),
as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

# The characters an email's local part may hold, as the old pattern had them.
_LOCAL_CHARS = r"[\w.!#$%&'*+=?^`{|}~-]"
_LOCAL_RUN = re.compile(_LOCAL_CHARS + "*+")
_DOMAIN = re.compile(r"[\w-]++(?:\.[\w-]++)++")
# An "@" that a domain follows: only those can end a local part. Each test
# reads one label, and labels after different "@"s do not overlap.
_AT_DOMAIN = re.compile(r"@(?=[\w-]++\.[\w-])")
# Runs of 8 to 15 digits with phone punctuation, not touching letters, dots or
# colons (so addresses, ports and versions stay), and not an ISO date.
_PHONE = re.compile(r"(?<![\w.:])\+?\(?\d[\d\s()-]{6,}\d(?![\w.:])")
# The dotted North American style, 555.010.0000 or +1.555.010.0000: its last
# group of four digits sets it apart from an IPv4 address.
_DOTTED_PHONE = re.compile(r"(?<![\w.])(?:\+?\d{1,3}\.)?\d{3}\.\d{3}\.\d{4}(?![\w.])")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Shorter values are not hidden: replacing a one-letter "key" would garble every
# line, and a real Reusely key is far longer.
MIN_SECRET_LENGTH = 6


def mask_path(path: str) -> str:
    """A request path with emails and phones masked, also where they are %-encoded.

    The path is decoded until it stops changing (at most three times, as the
    path checks do) and masked; when masking found something, the masked
    decoded form is what is written, else the path as it was.
    """
    decoded = path
    for _ in range(3):
        if "%" not in decoded:
            break
        again = unquote(decoded)
        if again == decoded:
            break
        decoded = again
    masked = mask(decoded)
    return path if masked == decoded else masked


def mask(text: str) -> str:
    """Email-like and phone-like parts replaced by markers."""
    if "@" in text:
        text = _mask_emails(text)
    return _PHONE.sub(_phone, _DOTTED_PHONE.sub("[phone]", text))


def _mask_emails(text: str) -> str:
    """What `re.sub(local@domain, "[email]", text)` gives, in linear time."""
    size = len(text)
    reverse = text[::-1]
    out: list[str] = []
    done = 0  # the text before this is written out (or replaced)
    for at_match in _AT_DOMAIN.finditer(text):
        at = at_match.start()
        # The local part: the run of local-part characters ending at `at`,
        # starting no earlier than the end of the previous replacement.
        run = _LOCAL_RUN.match(reverse, size - at, size - done)
        start = at - (run.end() - run.start()) if run else at
        domain = _DOMAIN.match(text, at + 1) if start < at else None
        if domain is None:
            continue
        out.append(text[done:start])
        out.append("[email]")
        done = domain.end()
    out.append(text[done:])
    return "".join(out)


def _phone(match: re.Match[str]) -> str:
    found = match.group(0)
    digits = sum(c.isdigit() for c in found)
    return "[phone]" if 8 <= digits <= 15 and not _DATE.match(found) else found


def secrets_to_hide(secrets: Iterable[str]) -> tuple[str, ...]:
    """The values worth hiding: long enough that replacing them garbles nothing else."""
    return tuple(s for s in secrets if len(s) >= MIN_SECRET_LENGTH)


def hide(text: str, secrets: tuple[str, ...]) -> str:
    """Each secret value replaced by `[secret]`; linear in the text per secret."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "[secret]")
    return text
