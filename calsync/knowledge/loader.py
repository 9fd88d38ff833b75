"""Load and validate the troubleshooting articles in `articles/*.md`.

An article is a Markdown file with YAML front matter between `---` fences, followed by its steps:

    ---
    id: not-showing                      # lowercase slug, same as the file name
    title: Appointments Not Showing Up
    summary: One or two sentences.       # optional
    examples:                            # questions a rep would ask (the matcher trains on them)
      - why isn't my appointment showing on my calendar
    checks:                              # optional: step key -> diagnostic check names
      check-connection: [connection]
    ---
    ## Check your connection status {#check-connection}
    1. Open Settings and go to Calendar Connections

A step is a `## heading`, optionally followed by `{#key}` (otherwise the key is a slug of the
title), then paragraphs, then at most one list: `1.` numbered items or `-` bullet items. Indented
lines continue the list item above them.

Every problem in every file is collected and raised as one `ArticleError`, so a typo is loud and
an admin sees all of them at once.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

__all__ = [
    "ARTICLE_IDS",
    "KNOWN_CHECKS",
    "Article",
    "ArticleError",
    "KnowledgeBase",
    "Step",
    "default_articles_dir",
    "load_articles",
]

# The ids `calsync match` may print; tools outside the project rely on them (see DESIGN.md).
ARTICLE_IDS: tuple[str, ...] = (
    "not-showing",
    "duplicates",
    "not-connected",
    "popup-blocked",
    "changes-not-syncing",
    "switch-provider",
)

KNOWN_CHECKS: frozenset[str] = frozenset(
    {"connection", "calendar", "sync", "duplicates", "changes", "provider_switch"}
)

_FENCE = "---"
_REQUIRED_FIELDS = ("id", "title", "examples")
_KNOWN_FIELDS = frozenset({"id", "title", "summary", "examples", "checks"})
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_HEADING = re.compile(r"^(?P<hashes>#+)(?:\s+(?P<rest>.*?))?\s*$")
_HEADING_KEY = re.compile(r"^(?P<title>.*?)\s*\{#(?P<key>[^}]*)\}$")
_ORDERED_ITEM = re.compile(r"^\d+[.)](?:\s+(?P<text>.*))?$")
_BULLET_ITEM = re.compile(r"^[-*](?:\s+(?P<text>.*))?$")


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    text: str
    items: tuple[str, ...]
    ordered: bool  # True for a numbered list, False for bullets (or no list)


@dataclass(frozen=True)
class Article:
    id: str
    title: str
    summary: str
    examples: tuple[str, ...]
    steps: tuple[Step, ...]
    # Step key -> check names, with an entry (possibly empty) for every step, in step order.
    # Excluded from the hash because a mapping is not hashable; equality still compares it.
    checks: Mapping[str, tuple[str, ...]] = field(hash=False)
    path: Path

    def step(self, key: str) -> Step:
        for step in self.steps:
            if step.key == key:
                return step
        known = ", ".join(s.key for s in self.steps)
        raise KeyError(f"article {self.id!r} has no step {key!r} (steps: {known})")

    def checks_for(self) -> tuple[str, ...]:
        """All check names related to this article, de-duplicated, in step order."""
        return tuple(dict.fromkeys(name for names in self.checks.values() for name in names))


@dataclass(frozen=True)
class KnowledgeBase:
    articles: tuple[Article, ...]

    def get(self, article_id: str) -> Article:
        for article in self.articles:
            if article.id == article_id:
                return article
        raise KeyError(f"no article with id {article_id!r} (known: {', '.join(self.ids)})")

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(article.id for article in self.articles)


class ArticleError(ValueError):
    """One or more problems in the article files; `problems` lists each one on its own."""

    def __init__(self, problems: str | Iterable[str], directory: Path | None = None) -> None:
        self.problems: tuple[str, ...] = (problems,) if isinstance(problems, str) else tuple(problems)
        self.directory = directory
        where = f" in {directory}" if directory is not None else ""
        count = len(self.problems)
        header = f"{count} problem{'s' if count != 1 else ''} with the knowledge articles{where}:"
        super().__init__("\n".join([header, *(f"  - {p}" for p in self.problems)]))


def default_articles_dir() -> Path:
    return Path(__file__).resolve().with_name("articles")


def load_articles(
    directory: Path | None = None, *, required_ids: Collection[str] | None = None
) -> KnowledgeBase:
    """Load every `*.md` article in `directory` (default: the packaged articles).

    `required_ids` must all be present; it defaults to `ARTICLE_IDS` for the packaged articles
    and to none for any other directory. Raises `ArticleError` listing every problem found.
    """
    if directory is None:
        directory = default_articles_dir()
        if required_ids is None:
            required_ids = ARTICLE_IDS
    directory = Path(directory)
    required = tuple(required_ids or ())

    if not directory.is_dir():
        raise ArticleError([f"{directory}: not a directory"], directory)
    # Hidden files are editor leftovers (`.#foo.md`, `.foo.md.swp`), never articles.
    paths = sorted(p for p in directory.glob("*.md") if p.is_file() and not p.name.startswith("."))
    if not paths:
        raise ArticleError([f"{directory}: no articles (*.md files) found"], directory)

    problems: list[str] = []
    articles: list[Article] = []
    parsers: list[_ArticleParser] = []
    for path in paths:
        parser = _ArticleParser(path)
        article = parser.parse()
        parsers.append(parser)
        problems.extend(parser.problems)
        if article is not None:
            articles.append(article)

    problems.extend(_cross_file_problems(parsers, articles, required))
    if problems:
        raise ArticleError(problems, directory)

    order = {article_id: i for i, article_id in enumerate(ARTICLE_IDS)}
    articles.sort(key=lambda a: (order.get(a.id, len(order)), a.id))
    return KnowledgeBase(tuple(articles))


def _cross_file_problems(
    parsers: list[_ArticleParser], articles: list[Article], required: tuple[str, ...]
) -> list[str]:
    problems: list[str] = []
    # Typically a copied file whose id was not changed; that file also fails the file-name rule.
    # The file named after the id owns it, and every other file claiming it is reported.
    claims: dict[str, list[_ArticleParser]] = {}
    for parser in parsers:
        if parser.declared_id is not None:
            claims.setdefault(parser.declared_id, []).append(parser)
    for article_id, claimants in claims.items():
        owner = next((c for c in claimants if c.path.stem == article_id), claimants[0])
        for parser in claimants:
            if parser is not owner:
                line = f" line {parser.declared_id_line}:" if parser.declared_id_line else ""
                problems.append(
                    f"{parser.path.name}:{line} front matter: 'id' {article_id!r} "
                    f"is already used by {owner.path.name}"
                )
    stems = {parser.path.stem for parser in parsers}
    for article_id in required:
        if article_id not in stems:
            problems.append(f"{article_id}.md: file is missing (article {article_id!r} is required)")

    # The matcher cannot tell two articles apart on a question both claim.
    seen: dict[str, Article] = {}
    for article in articles:
        for example in article.examples:
            normalized = " ".join(example.lower().split())
            first = seen.setdefault(normalized, article)
            if first is not article:
                problems.append(
                    f"{article.path.name}: front matter: 'examples': {example!r} "
                    f"is also an example in {first.path.name}"
                )
    return problems


def _slugify(title: str) -> str:
    without_apostrophes = re.sub(r"['’]", "", title.lower())
    return re.sub(r"[^a-z0-9]+", "-", without_apostrophes).strip("-")


def _is_string_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


@dataclass
class _StepDraft:
    key: str
    title: str
    line: int
    paragraphs: list[list[str]] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    ordered: bool | None = None
    # After a blank line a new paragraph starts; after a list, prose is an error.
    open_paragraph: bool = False


class _ArticleParser:
    """Parses one file, recording problems instead of stopping at the first."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []
        self.declared_id: str | None = None  # the id as written, once it is a valid slug
        self.declared_id_line: int | None = None
        self._front_lines: list[str] = []

    def _problem(self, where: str, message: str, line: int | None = None) -> None:
        at = f" line {line}:" if line is not None else ""
        self.problems.append(f"{self.path.name}:{at} {where}: {message}")

    def parse(self) -> Article | None:
        try:
            text = self.path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            self._problem("file", f"not valid UTF-8 ({exc.reason} at byte {exc.start})")
            return None
        except OSError as exc:
            self._problem("file", f"cannot be read ({exc.strerror or exc})")
            return None

        lines = text.splitlines()
        if not lines or lines[0].strip() != _FENCE:
            self._problem("front matter", "missing: the file must start with a '---' line", 1)
            return None
        try:
            close = next(i for i in range(1, len(lines)) if lines[i].strip() == _FENCE)
        except StopIteration:
            self._problem("front matter", "no closing '---' line after the front matter", 1)
            return None
        self._front_lines = lines[1:close]
        meta = self._front_matter("\n".join(self._front_lines))
        steps = self._steps(lines[close + 1 :], first_line=close + 2)
        if meta is None:
            return None

        article_id = self._article_id(meta)
        title = self._required_string(meta, "title")
        summary = self._optional_string(meta, "summary")
        examples = self._examples(meta)
        checks = self._checks(meta, steps)
        if not steps:
            self._problem("steps", "at least one step ('## heading') is required", close + 2)

        if self.problems:
            return None
        assert article_id is not None and title is not None and examples is not None
        return Article(
            id=article_id,
            title=title,
            summary=summary,
            examples=examples,
            steps=tuple(steps),
            checks=checks,
            path=self.path,
        )

    # -- front matter -----------------------------------------------------------------------------

    def _front_matter(self, source: str) -> dict[str, Any] | None:
        try:
            # The C parser when PyYAML has it: the pure-Python one is a tenth of `calsync match`'s start.
            meta = yaml.load(source, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 2 if mark is not None else None  # +1 for 1-based, +1 for the fence
            self._problem("front matter", f"YAML syntax error: {exc.problem or exc}", line)
            return None
        except yaml.YAMLError as exc:
            self._problem("front matter", f"YAML error: {exc}")
            return None
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):
            self._problem("front matter", f"must be 'key: value' lines, not a {type(meta).__name__}", 2)
            return None
        for key in meta:
            if key not in _KNOWN_FIELDS:
                known = ", ".join(sorted(_KNOWN_FIELDS))
                self._problem("front matter", f"unknown field {key!r} (known: {known})", self._line_of(key))
        for key in _REQUIRED_FIELDS:
            if key not in meta:
                self._problem("front matter", f"{key!r} is missing")
        return meta

    def _line_of(self, key: object, after: int = 0, indented: bool = False) -> int | None:
        """Best-effort file line of a `key:` in the front matter (safe_load keeps no positions)."""
        indent = r"\s+" if indented else ""
        pattern = re.compile(rf"^{indent}['\"]?{re.escape(str(key))}['\"]?\s*:")
        for i, line in enumerate(self._front_lines[after:], start=after):
            if pattern.match(line):
                return i + 2
        return None

    def _required_string(self, meta: dict[str, Any], key: str) -> str | None:
        if key not in meta:
            return None  # already reported as missing
        value = meta[key]
        if not isinstance(value, str):
            self._problem("front matter", f"{key!r} must be text, not {_describe(value)}", self._line_of(key))
            return None
        if not value.strip():
            self._problem("front matter", f"{key!r} is empty", self._line_of(key))
            return None
        return value.strip()

    def _optional_string(self, meta: dict[str, Any], key: str) -> str:
        value = meta.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            self._problem("front matter", f"{key!r} must be text, not {_describe(value)}", self._line_of(key))
            return ""
        return value.strip()

    def _article_id(self, meta: dict[str, Any]) -> str | None:
        article_id = self._required_string(meta, "id")
        if article_id is None:
            return None
        line = self._line_of("id")
        if _SLUG.match(article_id):
            self.declared_id, self.declared_id_line = article_id, line
        else:
            self._problem(
                "front matter",
                f"'id' {article_id!r} must be a lowercase slug (letters, digits and single hyphens)",
                line,
            )
            return None
        if article_id != self.path.stem:
            self._problem(
                "front matter",
                f"'id' {article_id!r} does not match the file name (expected {self.path.stem!r})",
                line,
            )
            return None
        return article_id

    def _examples(self, meta: dict[str, Any]) -> tuple[str, ...] | None:
        if "examples" not in meta:
            return None
        value = meta["examples"]
        line = self._line_of("examples")
        if not _is_string_list(value):
            self._problem(
                "front matter", f"'examples' must be a list of text lines, not {_describe(value)}", line
            )
            return None
        examples = tuple(example.strip() for example in value)
        if not examples:
            self._problem("front matter", "'examples' is empty: add a few questions a rep would ask", line)
            return None
        if any(not example for example in examples):
            self._problem("front matter", "'examples' has an empty entry", line)
            return None
        return examples

    def _checks(self, meta: dict[str, Any], steps: list[Step]) -> Mapping[str, tuple[str, ...]]:
        mapping: dict[str, tuple[str, ...]] = {step.key: () for step in steps}
        value = meta.get("checks")
        if value is None:
            return MappingProxyType(mapping)
        checks_line = self._line_of("checks")
        if not isinstance(value, dict):
            self._problem(
                "front matter",
                f"'checks' must map step keys to lists of check names, not {_describe(value)}",
                checks_line,
            )
            return MappingProxyType(mapping)
        after = checks_line - 2 if checks_line is not None else 0
        for step_key, names in value.items():
            where = f"'checks' -> {step_key!r}"
            line = self._line_of(step_key, after=after, indented=True)
            if step_key not in mapping:
                known = ", ".join(mapping) or "none"
                self._problem("front matter", f"{where}: no step has this key (steps: {known})", line)
                continue
            if isinstance(names, str):
                names = [names]  # `key: connection` is an obvious shorthand for `[connection]`
            if names is None:
                names = []
            if not _is_string_list(names):
                self._problem("front matter", f"{where}: must be a list of check names", line)
                continue
            unknown = [name for name in names if name not in KNOWN_CHECKS]
            if unknown:
                known = ", ".join(sorted(KNOWN_CHECKS))
                self._problem(
                    "front matter",
                    f"{where}: unknown check {', '.join(map(repr, unknown))} (known: {known})",
                    line,
                )
                continue
            mapping[step_key] = tuple(dict.fromkeys(names))
        return MappingProxyType(mapping)

    # -- body -------------------------------------------------------------------------------------

    def _steps(self, body: list[str], first_line: int) -> list[Step]:
        drafts: list[_StepDraft] = []
        for number, raw in enumerate(body, start=first_line):
            line = raw.rstrip()
            stripped = line.strip()
            current = drafts[-1] if drafts else None

            if not stripped:
                if current is not None:
                    current.open_paragraph = False
                continue

            heading = _HEADING.match(stripped) if not line[0].isspace() else None
            if heading is not None:
                draft = self._heading(heading, number)
                if draft is not None:
                    drafts.append(draft)
                continue

            if current is None:
                self._problem("body", "text before the first '## ' step heading", number)
                continue

            where = f"step {current.key!r}"
            ordered_item = _ORDERED_ITEM.match(stripped)
            bullet_item = _BULLET_ITEM.match(stripped)
            item = ordered_item or bullet_item
            indented = line[0].isspace()
            if item is not None and indented and current.items:
                self._problem(where, "nested lists are not supported", number)
            elif item is not None:
                ordered = ordered_item is not None
                if current.ordered is not None and current.ordered != ordered:
                    self._problem(
                        where, "mixes numbered and bullet items: use one kind of list per step", number
                    )
                current.ordered = ordered
                item_text = (item["text"] or "").strip()
                if not item_text:
                    self._problem(where, "empty list item", number)
                current.items.append(item_text)
                current.open_paragraph = False
            elif indented and current.items:
                current.items[-1] = f"{current.items[-1]} {stripped}".strip()
            elif current.items:
                self._problem(
                    where, "text after a list: put it before the list or in a step of its own", number
                )
            elif current.open_paragraph:
                current.paragraphs[-1].append(stripped)
            else:
                current.paragraphs.append([stripped])
                current.open_paragraph = True

        steps: list[Step] = []
        seen: dict[str, int] = {}
        for draft in drafts:
            if draft.key in seen:
                self._problem(
                    f"step {draft.key!r}",
                    f"duplicate step key (first used on line {seen[draft.key]})",
                    draft.line,
                )
                continue
            seen[draft.key] = draft.line
            text = "\n\n".join(" ".join(paragraph) for paragraph in draft.paragraphs)
            if not text and not draft.items:
                self._problem(f"step {draft.key!r}", "has neither text nor list items", draft.line)
                continue
            steps.append(Step(draft.key, draft.title, text, tuple(draft.items), bool(draft.ordered)))
        return steps

    def _heading(self, heading: re.Match[str], number: int) -> _StepDraft | None:
        if heading["hashes"] != "##":
            self._problem("body", f"only '## ' headings are supported, not {heading['hashes']!r}", number)
            return None
        rest = heading["rest"] or ""
        keyed = _HEADING_KEY.match(rest)
        title = keyed["title"].strip() if keyed else rest
        if not title:
            self._problem("step heading", "has no title", number)
            return None
        key = keyed["key"].strip() if keyed else _slugify(title)
        if not _SLUG.match(key):
            self._problem(
                "step heading",
                f"key {key!r} must be a lowercase slug (letters, digits and single hyphens)",
                number,
            )
            return None
        return _StepDraft(key=key, title=title, line=number)


def _describe(value: object) -> str:
    if value is None:
        return "nothing"
    names = {dict: "a mapping", list: "a list", str: "text", bool: "true/false", int: "a number"}
    return names.get(type(value), f"a {type(value).__name__}")
