"""The playground's Reconnect Outlook goes to the sandbox Microsoft emulator, which is https with
calsync's own test CA, so a browser warns: the playground says why beside that button, with the CA
file to trust. Google's emulator is plain http on loopback and needs no such line."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import httpx
import pytest

from tests.harness import Sandbox
from tests.web.conftest import Pages

# (rep, question, the Reconnect button's label, whether the CA line is shown)
ROWS = [
    ("dev@northwind.example", "my o365 calendar says not connected", "Reconnect Outlook", True),
    ("carla@northwind.example", "why isn't my appointment showing", "Reconnect Google Calendar", False),
]


@pytest.mark.parametrize(("rep", "question", "button", "shown"), ROWS, ids=["outlook", "google"])
def test_reconnect_outlook_says_how_to_trust_the_sandbox_ca(
    pages: Pages, sandbox_session: Sandbox, rep: str, question: str, button: str, shown: bool
) -> None:
    response = httpx.get(f"{pages.url}/playground/ask", params={"rep": rep, "q": question}, timeout=60)
    assert response.status_code == 200, response.text
    page = unescape(response.text)
    assert button in page
    ca = str(Path(sandbox_session.endpoints.ca_path).resolve())
    note = re.search(r'<span class="note ca-note" id="outlook-ca">(.*?)</span>', page, re.DOTALL)
    assert (note is not None) == shown
    if note is not None:
        assert f"<code>{ca}</code>" in note.group(1) and "certificate" in note.group(1)
        # Right beside the button it explains, in the same row of actions.
        link = page.index(f"{button}</a>")  # the button itself (its words also open the fix)
        assert link < note.start() < link + 200
