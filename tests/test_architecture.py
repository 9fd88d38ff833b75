"""The house rules, checked: which layer may import which, and how big a class or a module may grow.

The layers, bottom to top (README, *Architecture*):

    settings, db, links            plain infrastructure
    syncbackend                    models, providers, the sync engine: codes, never words
    knowledge                      articles and the matcher
    render.labels, render.words    the vocabulary: what the product calls things
    diagnostics                    checks, runner, causes, the Answer
    store                          the surfaces' storage (answers, claims, audit, report views)
    render                         the Answer as text, Slack blocks, HTML
    flows                          workflows that cross layers
    bot, web                       the Slack and HTTP surfaces
    sandbox                        the emulators and demo data (a development tool)
    app, cli                       composition and commands

An import is checked wherever it is written (inside functions and under TYPE_CHECKING too): the
backend knowing the diagnostics layer "only for typing" is still the backend knowing it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "calsync"
MAX_CLASS_LINES = 400
MAX_MODULE_LINES = 800

VOCABULARY = ("calsync.render.labels", "calsync.render.words")
# (layer, what it must never import). A module belongs to the longest layer name that prefixes it.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "calsync.settings": ("calsync.",),
    "calsync.db": ("calsync.",),
    "calsync.syncbackend": (
        "calsync.knowledge",
        "calsync.diagnostics",
        "calsync.render",
        "calsync.store",
        "calsync.flows",
        "calsync.bot",
        "calsync.web",
        "calsync.sandbox",
        "calsync.app",
        "calsync.cli",
    ),
    "calsync.knowledge": (
        "calsync.diagnostics",
        "calsync.render",
        "calsync.store",
        "calsync.flows",
        "calsync.bot",
        "calsync.web",
        "calsync.sandbox",
        "calsync.app",
        "calsync.cli",
    ),
    "calsync.render.labels": ("calsync.",),
    "calsync.render.words": (
        "calsync.diagnostics",
        "calsync.store",
        "calsync.flows",
        "calsync.bot",
        "calsync.web",
        "calsync.app",
        "calsync.cli",
    ),
    "calsync.diagnostics": (
        "calsync.render",
        "calsync.store",
        "calsync.flows",
        "calsync.bot",
        "calsync.web",
        "calsync.sandbox",
        "calsync.app",
        "calsync.cli",
    ),
    "calsync.render": (
        "calsync.store",
        "calsync.flows",
        "calsync.bot",
        "calsync.web",
        "calsync.app",
        "calsync.cli",
    ),
    "calsync.store": (
        "calsync.render",
        "calsync.flows",
        "calsync.bot",
        "calsync.web",
        "calsync.app",
        "calsync.cli",
    ),
    "calsync.flows": ("calsync.bot", "calsync.web", "calsync.sandbox", "calsync.app", "calsync.cli"),
    "calsync.bot": ("calsync.web", "calsync.sandbox", "calsync.app", "calsync.cli"),
    "calsync.web": ("calsync.bot", "calsync.sandbox", "calsync.app", "calsync.cli"),
    "calsync.sandbox": ("calsync.bot", "calsync.web", "calsync.flows", "calsync.app", "calsync.cli"),
    "calsync.app": ("calsync.cli",),
}
# The ORM stays behind the store and the backend: no query is written in a handler, a page or a flow.
# What they may name: its error types (a database that is down is a 503, not a traceback) and the
# session factory they hand to a store.
NO_ORM = ("calsync.bot", "calsync.web", "calsync.flows")
ORM = "sqlalchemy"
ORM_ALLOWED = ("sqlalchemy.exc", "sqlalchemy.orm.sessionmaker", "sqlalchemy.orm.Session")
# Layers the vocabulary is above: they store codes, and never choose words.
BELOW_VOCABULARY = ("calsync.settings", "calsync.db", "calsync.syncbackend", "calsync.knowledge")


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        if "migrations" in relative.parts:
            continue
        parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
        yield ".".join(parts), path


def layer_of(module: str) -> str | None:
    owners = [layer for layer in FORBIDDEN if module == layer or module.startswith(layer + ".")]
    return max(owners, key=len, default=None)


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from calsync.render import labels` imports calsync.render.labels
                yield node.lineno, f"{node.module}.{alias.name}"


def _names(target: str, prefix: str) -> bool:
    return target == prefix or target.startswith(prefix + ".")


def may_import(layer: str, target: str) -> bool:
    """Whether a module of `layer` may import `target` (a calsync module)."""
    banned = FORBIDDEN[layer]
    if banned == ("calsync.",):
        return False
    if any(_names(target, word) for word in VOCABULARY):
        return layer not in BELOW_VOCABULARY
    return not any(_names(target, prefix) for prefix in banned)


def violations() -> list[str]:
    found: dict[tuple[str, int], str] = {}
    for module, path in modules():
        layer = layer_of(module)
        if layer is None:
            continue
        for line, target in imports_of(path):
            if target.startswith("calsync.") and not may_import(layer, target):
                found.setdefault((module, line), f"{module}:{line} imports {target} ({layer} must not)")
            orm = _names(target, ORM) and not any(_names(target, allowed) for allowed in ORM_ALLOWED)
            if orm and any(_names(module, surface) for surface in NO_ORM):
                found.setdefault(
                    (module, line), f"{module}:{line} imports {target} (no ORM here: use calsync.store)"
                )
    return [found[key] for key in sorted(found)]


def test_every_layer_imports_only_what_is_below_it() -> None:
    assert violations() == []


def _class_sizes(path: Path) -> Iterator[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
            yield node.name, node.end_lineno - node.lineno + 1


def test_no_class_over_400_lines_and_no_module_over_800() -> None:
    too_big = []
    for module, path in modules():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            too_big.append(f"{module}: {lines} lines")
        too_big.extend(
            f"{module}.{name}: {size} lines" for name, size in _class_sizes(path) if size > MAX_CLASS_LINES
        )
    assert too_big == []


@pytest.mark.parametrize(
    ("module", "target", "allowed"),
    [
        ("calsync.syncbackend.engine", "calsync.diagnostics.answer", False),
        ("calsync.syncbackend.engine", "calsync.render.labels", False),
        ("calsync.diagnostics.causes", "calsync.render.words", True),
        ("calsync.diagnostics.answer", "calsync.render.blocks", False),
        ("calsync.render.blocks", "calsync.diagnostics.answer", True),
        ("calsync.bot.messages", "calsync.flows.checks", True),
        ("calsync.bot.messages", "calsync.web.pages", False),
        ("calsync.flows.reconnect", "calsync.bot.messages", False),
        ("calsync.render.labels", "calsync.syncbackend.models", False),
    ],
)
def test_the_rules_read_as_the_docstring_says(module: str, target: str, allowed: bool) -> None:
    layer = layer_of(module)
    assert layer is not None
    assert may_import(layer, target) is allowed
