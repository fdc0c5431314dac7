"""The validator's one error type: a list of problems, each one printable line naming the entry and field."""

from __future__ import annotations

import unicodedata

MAX_SHOWN = 120  # characters of an untrusted name shown in a message


def shown(name: str) -> str:
    """An untrusted name (an archive entry, a field value) as one safe printable line: control and format
    characters (newlines, bidi overrides) escaped, cut to ``MAX_SHOWN`` characters."""
    out = []
    for ch in name[:MAX_SHOWN]:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out) + ("…" if len(name) > MAX_SHOWN else "")


class SubmissionError(Exception):
    """A submission that cannot be accepted. ``problems`` holds one line per problem ('ENTRY: field F: what')."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(one_line(p) for p in problems) or ("invalid submission",)
        super().__init__("\n".join(self.problems))


def one_line(text: str) -> str:
    return " ".join(text.split()) if "\n" in text or "\r" in text else text


class Problems:
    """Collects problems while a validation goes on, so one run reports all of them (up to ``limit`` lines)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lines: list[str] = []
        self.dropped = 0

    def add(self, entry: str, message: str) -> None:
        if len(self.lines) < self.limit:
            self.lines.append(f"{entry}: {message}")
        else:
            self.dropped += 1

    def __bool__(self) -> bool:
        return bool(self.lines)

    def raise_if_any(self) -> None:
        if self.lines:
            extra = [f"… and {self.dropped} more problems"] if self.dropped else []
            raise SubmissionError([*self.lines, *extra])
