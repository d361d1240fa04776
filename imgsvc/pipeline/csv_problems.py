"""What is wrong with an upload: each problem located by line and column, collected up to
MAX_PROBLEMS, and the error that carries them all."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_PROBLEMS = 100


@dataclass(frozen=True)
class CsvProblem:
    """One thing wrong with the upload, located as precisely as we can."""

    line: int | None
    column: str | None
    message: str

    def as_dict(self) -> dict[str, object]:
        """The JSON shape of the problem; unknown line or column is left out."""
        fields = {"line": self.line, "column": self.column, "message": self.message}
        return {key: value for key, value in fields.items() if value is not None}

    def describe(self) -> str:
        """One line for a person: ``line 4, Input Image Urls: ftp://x is not …``."""
        where = [] if self.column is None else [self.column]
        if self.line is not None and not re.search(rf"\bline {self.line}\b", self.message):
            where.insert(0, f"line {self.line}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class CsvError(Exception):
    """The upload is not an acceptable CSV; carries every problem found (up to 100)."""

    def __init__(self, detail: str, problems: list[CsvProblem]) -> None:
        super().__init__(detail)
        self.detail = detail
        self.problems = problems


class Problems:
    """Collects problems; reading stops once MAX_PROBLEMS are held."""

    def __init__(self) -> None:
        self.items: list[CsvProblem] = []

    def add(self, line: int | None, column: str | None, message: str) -> None:
        """Record a problem, unless MAX_PROBLEMS are held already."""
        if not self.full:
            self.items.append(CsvProblem(line, column, message))

    @property
    def full(self) -> bool:
        """Whether no more problems are recorded."""
        return len(self.items) >= MAX_PROBLEMS

    def error(self) -> CsvError:
        """The error carrying every problem held, its detail naming the first."""
        count, first = len(self.items), self.items[0].describe()
        if count == 1:
            detail = f"the CSV has a problem: {first}"
        elif self.full:
            detail = (
                f"the CSV has at least {count} problems (only these are listed); the first: {first}"
            )
        else:
            detail = f"the CSV has {count} problems; the first: {first}"
        return CsvError(detail, self.items)


def fatal(line: int | None, message: str) -> CsvError:
    """The error of one problem that stops everything."""
    problems = Problems()
    problems.add(line, None, message)
    return problems.error()


def show(text: str, limit: int = 80) -> str:
    """Text short and printable enough to quote in a message; the end keeps the file name."""
    if len(text) > limit:
        text = f"{text[: limit - 21]}…{text[-20:]}"
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
