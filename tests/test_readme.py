"""The README and the docs it links say what the code does: the settings table matches what
imgsvc reads, both ways and with every default, and every file they name exists; compose.yaml
sets only real settings."""

from __future__ import annotations

import re
from dataclasses import MISSING, fields
from pathlib import Path

from imgsvc import cli
from imgsvc.config import Settings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
COMPOSE = ROOT / "compose.yaml"
DOCS = sorted((ROOT / "docs").glob("*.md"))
# A row of the settings table: | `IMGSVC_NAME` | default | meaning |
ROW = re.compile(r"^\| `(IMGSVC_[A-Z0-9_]+)` \| ([^|]+) \|", re.MULTILINE)
# Where code outside Settings reads a variable (the CLI's own).
READ = re.compile(r"environ\.get\(\s*\"(IMGSVC_[A-Z0-9_]+)\"")
# Defaults of the variables the CLI reads, as the code has them.
CLIENT_DEFAULTS = {"IMGSVC_SERVER": cli.DEFAULT_SERVER, "IMGSVC_API_KEY": None}
PATH = re.compile(r"(?<![\w/.-])((?:imgsvc|tests|scripts)/[\w./-]*[\w/])")
LINK = re.compile(r"\]\(([^)#:]+)(?:#[^)]*)?\)")
# What compose.yaml sets (`IMGSVC_NAME: value`) and mounts from the repository (`./file:`).
SET = re.compile(r"^\s+(IMGSVC_[A-Z0-9_]+):", re.MULTILINE)
MOUNTED = re.compile(r"^\s+- \./([\w.-]+):", re.MULTILINE)


def table() -> dict[str, str]:
    """The README's settings table: each variable and its default cell."""
    rows = ROW.findall(README.read_text(encoding="utf-8"))
    names = [name for name, _ in rows]
    assert len(names) == len(set(names)), "a variable has two rows"
    return {name: default.strip() for name, default in rows}


def read_by_code() -> dict[str, object]:
    """Every IMGSVC_* variable imgsvc reads, with its default (None: none to show)."""
    found: dict[str, object] = {}
    for f in fields(Settings):
        default = None if f.default is MISSING else f.default
        found[f"IMGSVC_{f.name.upper()}"] = default
    for source in (ROOT / "imgsvc").rglob("*.py"):
        for name in READ.findall(source.read_text(encoding="utf-8")):
            found[name] = CLIENT_DEFAULTS[name]
    return found


def shown(value: object) -> str | None:
    """A default as the table writes it in backticks; None when it is told in words."""
    if value is None or value == () or value == "":
        return None
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(shown(v) or "" for v in value)
    if isinstance(value, Path):
        return f"./{value}"
    return str(value)


def test_every_variable_the_code_reads_has_a_row_and_every_row_is_read() -> None:
    documented, read = set(table()), set(read_by_code())
    assert read - documented == set(), "read by imgsvc but missing from the README's table"
    assert documented - read == set(), "in the README's table but read by nothing"
    assert {"IMGSVC_WEBHOOK_SECRET", "IMGSVC_SERVER", "IMGSVC_API_KEY"} <= documented


def test_every_row_shows_the_default_the_code_has() -> None:
    rows = table()
    for name, default in read_by_code().items():
        cell = rows[name]
        literal = shown(default)
        if literal is None:  # no value to show: the cell says in words what happens
            assert not cell.startswith("`"), f"{name}: {cell} but the code has no default"
        else:
            assert cell.split(" ", 1)[0] == f"`{literal}`", f"{name}: {cell}, code: {literal}"


def test_the_defaults_are_rendered_as_written() -> None:
    """The renderer the check above relies on, on each kind of value Settings holds."""
    assert shown(False) == "0"
    assert shown(30.0) == "30"
    assert shown((5.0, 300.0)) == "5,300"
    assert shown(Path("storage")) == "./storage"
    assert shown(()) is None


def test_every_file_and_link_the_readme_and_docs_name_exists() -> None:
    for page in [README, *DOCS]:
        text = page.read_text(encoding="utf-8")
        for path in PATH.findall(text):
            assert (ROOT / path).exists(), f"{page.name} names {path}, which does not exist"
        for link in LINK.findall(text):
            target = (page.parent / link).resolve()
            assert target.exists(), f"{page.name} links {link}, which does not exist"
    linked = set(LINK.findall(README.read_text(encoding="utf-8")))
    assert {f"docs/{doc.name}" for doc in DOCS} <= linked, "a docs page the README never links"


def test_compose_sets_only_real_settings_and_mounts_files_that_exist() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    set_there = set(SET.findall(text))
    assert {"IMGSVC_DATABASE_URL", "IMGSVC_STORAGE_URL", "IMGSVC_PUBLIC_URL"} <= set_there
    assert set_there - set(read_by_code()) == set(), "compose.yaml sets what imgsvc never reads"
    mounted = MOUNTED.findall(text)
    assert mounted
    for name in mounted:
        assert (ROOT / name).is_file(), f"compose.yaml mounts {name}, which does not exist"
