"""The rep's words turned toward a support agent: the same sentences, about the rep in the third
person ("Carla's calendar", "their connection", "they can only read …").

Every rep-facing sentence is written to the rep ("your calendar"); the agent's full report shows
those sentences to someone else. Rather than a second copy of every sentence, this rewrites the
few second-person forms the sentences use. What the rep sees in Slack is never passed through here.
"""

from __future__ import annotations

import re

# "you" after these reads as an object ("shared with you" -> "shared with them").
_OBJECT_AFTER = {"with", "to", "for", "at", "from", "let", "help", "tell", "show", "ask", "give", "gives"}
_WORD = re.compile(r"\b(you're|you've|you'll|you'd|yourself|yours|your|you)\b", re.IGNORECASE)
_CONTRACTIONS = {"you're": "they're", "you've": "they've", "you'll": "they'll", "you'd": "they'd"}


def first_name(name: str | None, email: str) -> str:
    """How the report calls the rep: the first word of their name, else their email."""
    words = (name or "").split()
    return words[0] if words else email


def about_rep(text: str, name: str) -> str:
    """`text` (written to the rep) about the rep: the first "your" becomes "{name}'s", later ones
    "their"; "you" becomes "they" (or "them" after a preposition)."""
    named = False

    def replace(match: re.Match[str]) -> str:
        nonlocal named
        word = match.group(0)
        lower = word.lower()
        if lower == "your":
            new = "their" if named else f"{name}'s"
            named = True
        elif lower == "yours":
            new = "theirs"
        elif lower == "yourself":
            new = "themselves"
        elif lower in _CONTRACTIONS:
            new = _CONTRACTIONS[lower]
        else:
            before = text[: match.start()].split()
            previous = before[-1].lower().strip("(,") if before else ""
            new = "them" if previous in _OBJECT_AFTER else "they"
        return new[0].upper() + new[1:] if word[0].isupper() and not new.startswith(name) else new

    return _WORD.sub(replace, text)


__all__ = ["about_rep", "first_name"]
