"""Reading the repository's Markdown the way `make docs-check` needs it.

Fenced blocks carry how they are checked in their info string, after the
language (GitHub shows none of it):

    ```sh                      run, in order, in one shell per page, against `make run`
    ```sh redis                the same, against `make run` with GATEWAY_REDIS_URL set
    ```sh needs=WHAT           not run here (WHAT: terminal, reusely-account, cluster,
                               docker); its syntax is checked, and what can be checked of
                               it is (Helm renders, kubectl Secrets, docker build args)
    ```yaml policy [file=F]    a whole policy, validated as the gateway validates one
    ```yaml values [file=F]    Helm values, rendered with the chart in this repository
    # -> text                  inside a run block: `text` must appear in its output

`file=F` writes the block to F in the page's scratch directory before the
page's commands run, so that a later command can use it as a reader would.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.gateway import ROOT

PAGES = (
    ROOT / "README.md",
    ROOT / "ARCHITECTURE.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "charts" / "reusely-gateway" / "README.md",
    ROOT / "bench" / "README.md",
)
SHELLS = frozenset({"sh", "bash", "shell"})
NEEDS = frozenset({"terminal", "reusely-account", "cluster", "docker"})
EXPECT = "# -> "
_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\((?P<target>[^)\s]+)\)")
_INLINE_CODE = re.compile(r"`[^`\n]*`")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    words: tuple[str, ...]  # the info string after the language
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    def attr(self, name: str) -> str | None:
        for word in self.words:
            key, sep, value = word.partition("=")
            if sep and key == name:
                return value
        return None

    def has(self, flag: str) -> bool:
        return flag in self.words

    @property
    def is_shell(self) -> bool:
        return self.lang in SHELLS

    @property
    def runs(self) -> bool:
        """Run by docs-check: a shell block that needs nothing we lack."""
        return self.is_shell and self.attr("needs") is None

    @property
    def expected(self) -> list[str]:
        return [line.strip()[len(EXPECT):].strip() for line in self.text.splitlines()
                if line.strip().startswith(EXPECT)]


def blocks(page: Path) -> list[Block]:
    """Every fenced block of a page, its indentation (inside a list item) removed."""
    found: list[Block] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        info = opening["info"].split()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        found.append(Block(page, i + 1, info[0] if info else "", tuple(info[1:]),
                           "\n".join(body) + "\n"))
        i = j + 1
    return found


def prose(page: Path) -> str:
    """The page without its fenced blocks and inline code: where links live."""
    return "\n".join(_INLINE_CODE.sub("", line) for line in _lines_outside_fences(page))


def links(page: Path) -> list[str]:
    return [m["target"] for m in _LINK.finditer(prose(page))]


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in _lines_outside_fences(page):
        match = re.match(r"^#{1,6} +(.*?)#*\s*$", line)
        if match is None:
            continue
        base = slug(match[1])
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


@dataclass
class Table:
    page: Path
    heading: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)


def tables(page: Path) -> list[Table]:
    """Every Markdown table of a page with the heading it sits under."""
    found: list[Table] = []
    heading = ""
    current: Table | None = None
    for line in _lines_outside_fences(page):
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if not line.startswith("|"):
            current = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if current is None:
            current = Table(page, heading, cells)
            found.append(current)
        elif not all(re.fullmatch(r":?-+:?", c) for c in cells):
            current.rows.append(cells)
    return found


def _lines_outside_fences(page: Path) -> Iterator[str]:
    inside: str | None = None
    for line in page.read_text().splitlines():
        opening = _FENCE.match(line)
        if inside is None and opening is not None:
            inside = opening["fence"]
            continue
        if inside is not None:
            if line.strip().startswith(inside):
                inside = None
            continue
        yield line


def code_names(cell: str) -> list[str]:
    """The `code` spans of a table cell, `{a,b}` alternatives expanded."""
    names = []
    for span in re.findall(r"`([^`]+)`", cell):
        brace = re.search(r"\{([^}]*)\}", span)
        if brace and "," in brace[1]:
            names += [span[:brace.start()] + part + span[brace.end():]
                      for part in brace[1].split(",")]
        else:
            names.append(span)
    return names


def commands(script: str) -> list[list[str]]:
    """The simple commands of a script: continuation lines joined, split on ; && || |."""
    joined = re.sub(r"\\\n", " ", script)
    found = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
        for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", line):
            try:
                words = shlex.split(part)
            except ValueError:
                continue
            if words:
                found.append(words)
    return found


class ShellSession:
    """One bash for a page's blocks, as one terminal: exports and functions carry over.

    Each block is written to a file and sourced with stdin from /dev/null, under
    `set -euo pipefail`: a failing command ends the session, and the test with it.
    """

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self._dir = cwd / ".docs-blocks"
        self._dir.mkdir()
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], cwd=cwd, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._send("set -euo pipefail\n")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self._lines.append(raw.decode(errors="replace"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def run(self, script: str, timeout: float = 90) -> str:
        """The block's output; AssertionError if it failed or did not finish in time."""
        marker = f"__docs_block_{uuid.uuid4().hex}__"
        path = self._dir / f"{marker}.sh"
        path.write_text(script)
        with self._cond:
            start = len(self._lines)
        self._send(f"source {shlex.quote(str(path))} < /dev/null\nprintf '\\n%s\\n' {marker}\n")
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                output = "".join(self._lines[start:])
                if f"\n{marker}\n" in output:
                    return output.split(f"\n{marker}\n", 1)[0]
                if self._eof:
                    raise AssertionError(f"the shell stopped (a command failed):\n{output}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no end within {timeout} s:\n{output}")
                self._cond.wait(left)

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(10)
        self._reader.join(10)
        self.proc.stdout.close()


def scratch(tmp: Path) -> Path:
    """A directory that looks like the repository's root to a command, and keeps
    what the commands write (a policy, keys, a values file) out of the repository."""
    root = tmp / "repo"
    root.mkdir()
    for entry in ROOT.iterdir():
        if entry.name != ".git":
            (root / entry.name).symlink_to(entry)
    return root
