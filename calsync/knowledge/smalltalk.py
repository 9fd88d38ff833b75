"""Messages that are not a question at all: a greeting, a thank-you, an empty or emoji-only message.

They get a short reply and no diagnosis. The rule is deliberately narrow: every word of the message
must be a greeting, thanks or acknowledgement word (at most `MAX_WORDS` of them), so "hi, my
calendar is broken" is a question like any other and is diagnosed.
"""

from __future__ import annotations

import re
from typing import Literal

SmallTalk = Literal["empty", "greeting", "thanks"]

MAX_WORDS = 8


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_GREETING = _words(
    "hi hii hiya hello helo hallo hey heya heyy yo howdy morning afternoon evening gm sup hola "
    "bonjour there bot calsync team everyone folks guys anyone anybody"
)
_THANKS = _words(
    "thanks thank thx thnx thanx ty tysm cheers appreciated appreciate great perfect awesome cool "
    "nice brilliant excellent amazing lovely ok okay k kk got gotcha noted fixed solved sorted "
    "worked works working fine good np yes yep yeah yup sure lol haha nvm nevermind ta"
)
# Words that may stand beside those without making a question ("thank you so much, that worked").
_FILLER = _words("you u so much very a lot for the that it its it's now all again man mate")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_SLACK_MARKUP = re.compile(r"<[@#!][^>]*>|:[a-z0-9_+\-]+:")


def small_talk(message: str) -> SmallTalk | None:
    """What kind of small talk `message` is, or None when it may be a question."""
    words = [word.lower() for word in _WORD.findall(_SLACK_MARKUP.sub(" ", message))]
    if not words:
        return "empty"
    if len(words) > MAX_WORDS or not all(w in _GREETING or w in _THANKS or w in _FILLER for w in words):
        return None
    thanks = {word for word in words if word in _THANKS}
    if any(word in _GREETING for word in words) and thanks <= {"good"}:  # "good morning"
        return "greeting"
    if "?" in message:  # "working now?" asks something
        return None
    return "thanks" if thanks else None
