"""The knowledge-base loader: the packaged articles match the help center, and every kind of
mistake in an article file is reported loudly, naming the file and the field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from calsync.knowledge.loader import (
    ARTICLE_IDS,
    KNOWN_CHECKS,
    Article,
    ArticleError,
    KnowledgeBase,
    Step,
    default_articles_dir,
    load_articles,
)

HELP_CENTER = Path(__file__).parents[2].parent / "shared/help-center/calendar-sync-issues.txt"


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_articles()


# -- the packaged articles ------------------------------------------------------------------------

ARTICLES = [
    # id, title, summary
    (
        "not-showing",
        "Appointments Not Showing Up",
        "If appointments booked through SalesPartner don't appear on your calendar, try these steps.",
    ),
    (
        "duplicates",
        "Duplicate Appointments",
        "Seeing the same appointment twice on your calendar? Here's what to do.",
    ),
    (
        "not-connected",
        'Calendar Shows "Not Connected"',
        "If your calendar was working but now shows disconnected, your authorization may have expired.",
    ),
    (
        "popup-blocked",
        "Popup Blocked When Connecting",
        "When you try to connect your calendar, a new window opens for you to sign in. "
        "If nothing happens, allow popups for this site.",
    ),
    (
        "changes-not-syncing",
        "Changes Made in Calendar Not Reflecting",
        "When you move or edit an appointment directly in Google Calendar or Outlook, "
        "SalesPartner picks up those changes automatically.",
    ),
    (
        "switch-provider",
        "Switching Calendar Providers",
        "Want to switch from Google Calendar to Outlook (or vice versa)?",
    ),
]

# article id -> its steps, in order, in the help center's own words.
STEPS: dict[str, list[Step]] = {
    "not-showing": [
        Step(
            "check-connection",
            "Check your connection status",
            "",
            (
                "Open Settings and go to Calendar Connections",
                'Look at the "Current Connection" section',
                'If it shows "Not Connected," you\'ll need to reconnect',
            ),
            True,
        ),
        Step(
            "right-calendar",
            "Verify the right calendar is selected",
            "Your calendar provider may have multiple calendars (personal, work, shared). "
            "Make sure SalesPartner is connected to the one you use for appointments.",
            (),
            False,
        ),
        Step(
            "give-it-a-moment",
            "Give it a moment",
            "Calendar sync happens regularly throughout the day. New appointments typically appear "
            "within 15 minutes. If you just booked something, wait a few minutes and refresh your calendar.",
            (),
            False,
        ),
    ],
    "duplicates": [
        Step(
            "dont-delete-both",
            "Don't delete both copies",
            "If you delete an appointment from your calendar, SalesPartner will mark it as cancelled. "
            "Only delete one copy.",
            (),
            False,
        ),
        Step(
            "multiple-calendars",
            "Check for multiple calendars",
            "You might have the same Google account connected through different calendars. "
            "Go to Calendar Connections and make sure you only have one active connection.",
            (),
            False,
        ),
        Step(
            "contact-support",
            "Contact support if it keeps happening",
            "Duplicates that keep appearing may indicate a sync conflict. "
            "Our team can look at your account and sort it out.",
            (),
            False,
        ),
    ],
    "not-connected": [
        Step(
            "why-this-happens",
            "Why this happens",
            "",
            (
                "Password changes on your Google or Outlook account",
                "Security settings changes",
                "App permissions were revoked",
                "It's been a long time since you signed in",
            ),
            False,
        ),
        Step(
            "reconnect",
            "How to reconnect",
            "",
            (
                "Go to Settings > Calendar Connections",
                "Click Authorize (if you see this button) or Reconnect",
                "Sign in to your calendar account when prompted",
                "Allow the permissions SalesPartner needs",
                "Wait for the connection to confirm",
            ),
            True,
        ),
        Step(
            "after-reconnecting",
            "After reconnecting",
            "After reconnecting, your upcoming appointments will sync on the next cycle.",
            (),
            False,
        ),
    ],
    "popup-blocked": [
        Step(
            "allow-popups",
            "Allow popups for this site",
            "",
            (
                'Chrome: Click the popup-blocked icon in the address bar and select "Always allow"',
                "Safari: Go to Preferences > Websites > Pop-up Windows and allow for this site",
                "Firefox: Click the shield icon and allow popups",
            ),
            False,
        ),
        Step(
            "try-again",
            "After allowing popups",
            "After allowing popups, try connecting again. The authorization window should open normally.",
            (),
            False,
        ),
    ],
    "changes-not-syncing": [
        Step(
            "sync-timing",
            "Sync timing",
            "Changes are detected within 15-30 minutes. "
            "During busy business hours, sync happens more frequently.",
            (),
            False,
        ),
        Step(
            "what-syncs",
            "What syncs",
            "",
            ("Time and date changes", "Appointment titles", "Descriptions"),
            False,
        ),
        Step(
            "what-doesnt-sync",
            "What doesn't sync",
            "",
            (
                "Deleting an appointment in your calendar will cancel it in SalesPartner",
                "Adding appointments directly to your calendar won't create them in SalesPartner "
                "(appointments must be booked through conversations)",
            ),
            False,
        ),
        Step(
            "not-syncing",
            "If changes aren't syncing",
            "Check that your calendar is still connected. A disconnected calendar won't receive updates.",
            (),
            False,
        ),
    ],
    "switch-provider": [
        Step(
            "before-you-switch",
            "Before you switch",
            "",
            (
                "Your existing appointments stay in SalesPartner",
                "The old calendar keeps any appointments already synced there",
                "New appointments will go to your new calendar",
            ),
            False,
        ),
        Step(
            "how-to-switch",
            "How to switch",
            "",
            (
                "Go to Settings > Calendar Connections",
                "Disconnect your current calendar",
                "Select your new provider",
                "Follow the authorization steps",
                "Test by booking a test appointment",
            ),
            True,
        ),
        Step(
            "important",
            "Important",
            "Switching providers doesn't move your existing appointments to the new calendar. "
            "They'll remain where they were originally synced.",
            (),
            False,
        ),
    ],
}

CHECKS = [
    # article id, step key, related checks
    ("not-showing", "check-connection", ("connection",)),
    ("not-showing", "right-calendar", ("calendar",)),
    ("not-showing", "give-it-a-moment", ("sync",)),
    ("duplicates", "dont-delete-both", ("duplicates",)),
    ("duplicates", "multiple-calendars", ("duplicates", "connection")),
    ("not-connected", "why-this-happens", ("connection",)),
    ("not-connected", "reconnect", ("connection",)),
    ("popup-blocked", "allow-popups", ()),
    ("popup-blocked", "try-again", ()),
    ("changes-not-syncing", "not-syncing", ("connection", "sync", "changes")),
    ("switch-provider", "before-you-switch", ("provider_switch",)),
]


def test_packaged_articles_have_the_contract_ids_in_order(kb: KnowledgeBase) -> None:
    assert kb.ids == ARTICLE_IDS
    assert default_articles_dir().is_dir()


@pytest.mark.parametrize(("article_id", "title", "summary"), ARTICLES, ids=[a[0] for a in ARTICLES])
def test_article_title_summary_and_examples(
    kb: KnowledgeBase, article_id: str, title: str, summary: str
) -> None:
    article = kb.get(article_id)
    assert (article.id, article.title, article.summary) == (article_id, title, summary)
    assert article.path.name == f"{article_id}.md"
    assert 5 <= len(article.examples) <= 10
    assert len(set(article.examples)) == len(article.examples)


@pytest.mark.parametrize("article_id", list(STEPS), ids=list(STEPS))
def test_article_steps_match_the_help_center(kb: KnowledgeBase, article_id: str) -> None:
    assert list(kb.get(article_id).steps) == STEPS[article_id]


@pytest.mark.parametrize(("article_id", "step_key", "checks"), CHECKS, ids=[f"{a}/{s}" for a, s, _ in CHECKS])
def test_step_checks(kb: KnowledgeBase, article_id: str, step_key: str, checks: tuple[str, ...]) -> None:
    article = kb.get(article_id)
    assert article.step(step_key).key == step_key
    assert article.checks[step_key] == checks


def test_every_step_has_a_checks_entry_and_only_known_checks(kb: KnowledgeBase) -> None:
    for article in kb.articles:
        assert list(article.checks) == [step.key for step in article.steps]
        assert set(article.checks_for()) <= KNOWN_CHECKS


@pytest.mark.parametrize(
    ("article_id", "expected"),
    [
        ("not-showing", ("connection", "calendar", "sync")),
        ("duplicates", ("duplicates", "connection", "sync")),
        ("changes-not-syncing", ("sync", "changes", "connection")),
        ("popup-blocked", ()),
    ],
    ids=["not-showing", "duplicates", "changes-not-syncing", "popup-blocked"],
)
def test_checks_for_is_deduplicated_in_step_order(
    kb: KnowledgeBase, article_id: str, expected: tuple[str, ...]
) -> None:
    assert kb.get(article_id).checks_for() == expected


@pytest.mark.skipif(not HELP_CENTER.exists(), reason="help-center source text not present")
def test_every_step_word_is_verbatim_from_the_help_center(kb: KnowledgeBase) -> None:
    source = " ".join(HELP_CENTER.read_text(encoding="utf-8").split())
    for article in kb.articles:
        assert article.title in source
        for step in article.steps:
            for piece in (step.title, step.text, *step.items):
                assert piece in source, f"{article.id}/{step.key}: {piece!r}"


def test_lookups_fail_with_clear_messages(kb: KnowledgeBase) -> None:
    with pytest.raises(KeyError, match=r"no article with id 'nope'.*not-showing"):
        kb.get("nope")
    with pytest.raises(KeyError, match=r"'popup-blocked' has no step 'nope'.*allow-popups"):
        kb.get("popup-blocked").step("nope")


def test_loaded_objects_are_immutable_and_hashable(kb: KnowledgeBase) -> None:
    article = kb.get("not-showing")
    with pytest.raises(dataclasses.FrozenInstanceError):
        article.title = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        article.checks["right-calendar"] = ()  # type: ignore[index]
    assert {article: 1}[article] == 1
    assert load_articles().get("not-showing") == article


# -- writing articles into tmp_path ---------------------------------------------------------------

VALID_FRONT = """\
id: {id}
title: A title
summary: A summary.
examples:
  - first question
  - second question
checks:
  first-step: [connection]
"""
VALID_BODY = """\
## First step {#first-step}
Some text.

## Second step
1. one
2. two
"""


def article_text(article_id: str, front: str | None = None, body: str = VALID_BODY) -> str:
    front = VALID_FRONT.format(id=article_id) if front is None else front
    return f"---\n{front}---\n{body}"


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def load_error(directory: Path) -> ArticleError:
    with pytest.raises(ArticleError) as caught:
        load_articles(directory)
    return caught.value


def test_a_valid_file_loads(tmp_path: Path) -> None:
    kb = load_articles(write(tmp_path, {"alpha.md": article_text("alpha")}))
    article = kb.get("alpha")
    assert article.steps == (
        Step("first-step", "First step", "Some text.", (), False),
        Step("second-step", "Second step", "", ("one", "two"), True),
    )
    assert dict(article.checks) == {"first-step": ("connection",), "second-step": ()}
    assert article.examples == ("first question", "second question")


BODIES = [
    # id, body, expected steps
    (
        "key-derived-from-title",
        "## Don't delete both copies!\ntext\n",
        (Step("dont-delete-both-copies", "Don't delete both copies!", "text", (), False),),
    ),
    (
        "lines-joined-paragraphs-kept",
        "## S {#s}\nline one\nline two\n\nsecond paragraph\n",
        (Step("s", "S", "line one line two\n\nsecond paragraph", (), False),),
    ),
    (
        "text-then-bullets",
        "## S {#s}\nIntro:\n- a\n* b\n",
        (Step("s", "S", "Intro:", ("a", "b"), False),),
    ),
    (
        "indented-line-continues-item",
        "## S {#s}\n1. first\n   continued\n2. second\n",
        (Step("s", "S", "", ("first continued", "second"), True),),
    ),
    (
        "hash-without-space-is-text",
        "## S {#s}\n#hashtag in text\n",
        (Step("s", "S", "#hashtag in text", (), False),),
    ),
    (
        "crlf-line-endings",
        "## S {#s}\r\n- a\r\n",
        (Step("s", "S", "", ("a",), False),),
    ),
]


@pytest.mark.parametrize(("body", "expected"), [b[1:] for b in BODIES], ids=[b[0] for b in BODIES])
def test_markdown_subset(tmp_path: Path, body: str, expected: tuple[Step, ...]) -> None:
    front = "id: alpha\ntitle: T\nexamples: [q]\n"
    kb = load_articles(write(tmp_path, {"alpha.md": article_text("alpha", front, body)}))
    assert kb.get("alpha").steps == expected


# One row per kind of mistake: the files to write, then strings the error message must contain
# (always the file name, the field, and the line where one is known).
MISTAKES = [
    ("empty-file", {"alpha.md": ""}, ["alpha.md: line 1: front matter: missing"]),
    ("no-front-matter", {"alpha.md": VALID_BODY}, ["alpha.md: line 1: front matter: missing"]),
    (
        "unclosed-front-matter",
        {"alpha.md": "---\nid: alpha\n## S\ntext\n"},
        ["alpha.md: line 1: front matter: no closing '---'"],
    ),
    (
        "yaml-syntax-error",
        {"alpha.md": article_text("alpha", "id: alpha\ntitle: [unclosed\nexamples: [q]\n")},
        ["alpha.md: line 4: front matter: YAML syntax error"],
    ),
    (
        "front-matter-not-a-mapping",
        {"alpha.md": article_text("alpha", "- just\n- a list\n")},
        ["alpha.md: line 2: front matter: must be 'key: value' lines"],
    ),
    (
        "missing-title",
        {"alpha.md": article_text("alpha", "id: alpha\nexamples: [q]\n")},
        ["alpha.md: front matter: 'title' is missing"],
    ),
    (
        "missing-id",
        {"alpha.md": article_text("alpha", "title: T\nexamples: [q]\n")},
        ["alpha.md: front matter: 'id' is missing"],
    ),
    (
        "missing-examples",
        {"alpha.md": article_text("alpha", "id: alpha\ntitle: T\n")},
        ["alpha.md: front matter: 'examples' is missing"],
    ),
    (
        "empty-title",
        {"alpha.md": article_text("alpha", "id: alpha\ntitle: '  '\nexamples: [q]\n")},
        ["alpha.md: line 3: front matter: 'title' is empty"],
    ),
    (
        "empty-examples",
        {"alpha.md": article_text("alpha", "id: alpha\ntitle: T\nexamples: []\n")},
        ["alpha.md: line 4: front matter: 'examples' is empty"],
    ),
    (
        "empty-example",
        {"alpha.md": article_text("alpha", "id: alpha\ntitle: T\nexamples: [q, '']\n")},
        ["alpha.md: line 4: front matter: 'examples' has an empty entry"],
    ),
    (
        "examples-not-a-list",
        {"alpha.md": article_text("alpha", "id: alpha\ntitle: T\nexamples: just one\n")},
        ["alpha.md: line 4: front matter: 'examples' must be a list of text lines, not text"],
    ),
    (
        "examples-not-strings",
        {"alpha.md": article_text("alpha", "id: alpha\ntitle: T\nexamples:\n  - q\n  - {a: b}\n")},
        ["alpha.md: line 4: front matter: 'examples' must be a list of text lines"],
    ),
    (
        "title-not-text",
        {"alpha.md": article_text("alpha", "id: alpha\ntitle: [a, b]\nexamples: [q]\n")},
        ["alpha.md: line 3: front matter: 'title' must be text, not a list"],
    ),
    (
        "summary-not-text",
        {"alpha.md": article_text("alpha", "id: alpha\ntitle: T\nsummary: 12\nexamples: [q]\n")},
        ["alpha.md: line 4: front matter: 'summary' must be text, not a number"],
    ),
    (
        "unknown-field",
        {"alpha.md": article_text("alpha", "id: alpha\ntitle: T\nexamples: [q]\nexmaples: [q]\n")},
        ["alpha.md: line 5: front matter: unknown field 'exmaples'"],
    ),
    (
        "id-not-a-slug",
        {"Alpha.md": article_text("Alpha")},
        ["Alpha.md: line 2: front matter: 'id' 'Alpha' must be a lowercase slug"],
    ),
    (
        "id-not-the-file-name",
        {"alpha.md": article_text("beta")},
        ["alpha.md: line 2: front matter: 'id' 'beta' does not match the file name (expected 'alpha')"],
    ),
    (
        "duplicate-id",
        {"alpha.md": article_text("alpha"), "alpha-copy.md": article_text("alpha")},
        ["alpha-copy.md: line 2: front matter: 'id' 'alpha' is already used by alpha.md"],
    ),
    (
        "checks-not-a-mapping",
        {"alpha.md": article_text("alpha", "id: alpha\ntitle: T\nexamples: [q]\nchecks: [sync]\n")},
        ["alpha.md: line 5: front matter: 'checks' must map step keys to lists of check names"],
    ),
    (
        "unknown-check",
        {
            "alpha.md": article_text(
                "alpha", "id: alpha\ntitle: T\nexamples: [q]\nchecks:\n  first-step: [sinc]\n"
            )
        },
        ["alpha.md: line 6: front matter: 'checks' -> 'first-step': unknown check 'sinc'"],
    ),
    (
        "check-names-not-a-list",
        {
            "alpha.md": article_text(
                "alpha", "id: alpha\ntitle: T\nexamples: [q]\nchecks:\n  first-step: {a: b}\n"
            )
        },
        ["alpha.md: line 6: front matter: 'checks' -> 'first-step': must be a list of check names"],
    ),
    (
        "checks-for-a-missing-step",
        {
            "alpha.md": article_text(
                "alpha", "id: alpha\ntitle: T\nexamples: [q]\nchecks:\n  frist-step: [sync]\n"
            )
        },
        ["alpha.md: line 6: front matter: 'checks' -> 'frist-step': no step has this key"],
    ),
    (
        "no-steps",
        {"alpha.md": article_text("alpha", body="")},
        ["alpha.md: line 11: steps: at least one step"],
    ),
    (
        "text-before-first-step",
        {"alpha.md": article_text("alpha", body="Stray text\n" + VALID_BODY)},
        ["alpha.md: line 11: body: text before the first '## ' step heading"],
    ),
    (
        "wrong-heading-level",
        {"alpha.md": article_text("alpha", body=VALID_BODY + "### Deeper\ntext\n")},
        ["alpha.md: line 17: body: only '## ' headings are supported"],
    ),
    (
        "step-without-content",
        {"alpha.md": article_text("alpha", body=VALID_BODY + "## Empty {#empty}\n\n")},
        ["alpha.md: line 17: step 'empty': has neither text nor list items"],
    ),
    (
        "duplicate-step-key",
        {"alpha.md": article_text("alpha", body=VALID_BODY + "## First step again {#first-step}\nx\n")},
        ["alpha.md: line 17: step 'first-step': duplicate step key (first used on line 11)"],
    ),
    (
        "duplicate-derived-step-key",
        {"alpha.md": article_text("alpha", body=VALID_BODY + "## Second step\nx\n")},
        ["alpha.md: line 17: step 'second-step': duplicate step key (first used on line 14)"],
    ),
    (
        "bad-step-key",
        {"alpha.md": article_text("alpha", body=VALID_BODY + "## Third {#Third Step}\nx\n")},
        ["alpha.md: line 17: step heading: key 'Third Step' must be a lowercase slug"],
    ),
    (
        "heading-without-title",
        {"alpha.md": article_text("alpha", body=VALID_BODY + "## {#third}\nx\n")},
        ["alpha.md: line 17: step heading: has no title"],
    ),
    (
        "mixed-list-kinds",
        {"alpha.md": article_text("alpha", body=VALID_BODY + "- three\n")},
        ["alpha.md: line 17: step 'second-step': mixes numbered and bullet items"],
    ),
    (
        "text-after-list",
        {"alpha.md": article_text("alpha", body=VALID_BODY + "\nAfterwards.\n")},
        ["alpha.md: line 18: step 'second-step': text after a list"],
    ),
    (
        "empty-list-item",
        {"alpha.md": article_text("alpha", body=VALID_BODY + "3.\n")},
        ["alpha.md: line 17: step 'second-step': empty list item"],
    ),
    (
        "nested-list",
        {"alpha.md": article_text("alpha", body=VALID_BODY + "   - nested\n")},
        ["alpha.md: line 17: step 'second-step': nested lists are not supported"],
    ),
    (
        "example-claimed-by-two-articles",
        {"alpha.md": article_text("alpha"), "beta.md": article_text("beta")},
        ["beta.md: front matter: 'examples': 'first question' is also an example in alpha.md"],
    ),
    (
        "not-utf8",
        {"alpha.md": "---\nid: caf\xe9\n"},  # written as latin-1 below
        ["alpha.md: file: not valid UTF-8"],
    ),
]


@pytest.mark.parametrize(("files", "expected"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_mistakes_are_reported_with_file_and_field(
    tmp_path: Path, files: dict[str, str], expected: list[str]
) -> None:
    for name, text in files.items():
        encoding = "latin-1" if "\xe9" in text else "utf-8"
        (tmp_path / name).write_text(text, encoding=encoding)
    error = load_error(tmp_path)
    message = str(error)
    for fragment in expected:
        assert fragment in message
    assert str(tmp_path) in message.splitlines()[0]
    assert all(problem in message for problem in error.problems)


DIRECTORY_MISTAKES = [
    ("empty-directory", {}, "no articles (*.md files) found"),
    ("only-other-files", {"notes.txt": "hi", ".alpha.md": article_text("alpha")}, "no articles"),
]


@pytest.mark.parametrize(
    ("files", "expected"), [m[1:] for m in DIRECTORY_MISTAKES], ids=[m[0] for m in DIRECTORY_MISTAKES]
)
def test_directory_mistakes(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    assert f"{tmp_path}: {expected}" in str(load_error(write(tmp_path, files)))


def test_missing_directory(tmp_path: Path) -> None:
    assert "not a directory" in str(load_error(tmp_path / "nope"))


def test_required_ids_must_all_be_present(tmp_path: Path) -> None:
    write(tmp_path, {"alpha.md": article_text("alpha")})
    with pytest.raises(ArticleError, match=r"beta\.md: file is missing \(article 'beta' is required\)"):
        load_articles(tmp_path, required_ids=["alpha", "beta"])


def test_a_required_article_with_errors_is_not_also_reported_missing(tmp_path: Path) -> None:
    write(tmp_path, {"alpha.md": "no front matter"})
    with pytest.raises(ArticleError) as caught:
        load_articles(tmp_path, required_ids=["alpha"])
    assert len(caught.value.problems) == 1


def test_all_problems_in_all_files_are_reported_at_once(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "alpha.md": article_text("alpha", "id: alpha\nexamples: [q1]\nchecks:\n  nope: [sync]\n"),
            "beta.md": article_text("beta", "id: beta\ntitle: T\nexamples: [q2]\n", body="## Empty\n"),
            "gamma.md": article_text("gamma", "id: gamma\ntitle: T\nexamples: [q3]\n"),
        },
    )
    error = load_error(tmp_path)
    assert error.problems == (
        "alpha.md: front matter: 'title' is missing",
        "alpha.md: line 5: front matter: 'checks' -> 'nope': "
        "no step has this key (steps: first-step, second-step)",
        "beta.md: line 6: step 'empty': has neither text nor list items",
        "beta.md: line 6: steps: at least one step ('## heading') is required",
    )
    assert str(error).startswith(f"4 problems with the knowledge articles in {tmp_path}:\n  - alpha.md")


def test_packaged_articles_are_real_files_in_the_package() -> None:
    # The wheel ships them through pyproject's package-data "*.md"; this guards the location.
    names = sorted(p.name for p in default_articles_dir().glob("*.md"))
    assert names == sorted(f"{article_id}.md" for article_id in ARTICLE_IDS)
    assert isinstance(load_articles().articles[0], Article)
