"""What `/calsync …` text means. Pure parsing: anything odd becomes `Unknown` with the words to say
(chosen in `render/replies.py`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from calsync.render import replies

# Slack escapes a mention in command text as <@U123ABC|name> (or <@U123ABC>).
_MENTION = re.compile(r"^<@(?P<id>[UW][A-Z0-9]{2,})(?:\|[^>]*)?>$")
_EMAIL = re.compile(r"^<?(?:mailto:[^|>]*\|)?(?P<email>[^@\s<>|]+@[^@\s<>|]+\.[^@\s<>|]+)>?$")
MAX_TEXT = 500


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Diagnose:
    slack_user_id: str | None = None  # None: yourself
    email: str | None = None  # an agent may also name a rep by email


@dataclass(frozen=True)
class Reconnect:
    pass


@dataclass(frozen=True)
class Status:
    """Agents only: the fleet at a glance."""


@dataclass(frozen=True)
class Unknown:
    reason: str


Command = Help | Diagnose | Reconnect | Status | Unknown


def parse_command(text: str | None) -> Command:
    words = (text or "")[:MAX_TEXT].split()
    if not words or words[0].lower() in ("help", "?"):
        return Help() if len(words) <= 1 else Unknown(replies.takes_nothing("help"))
    verb, rest = words[0].lower(), words[1:]
    if verb == "reconnect":
        return Reconnect() if not rest else Unknown(replies.takes_nothing("reconnect"))
    if verb == "status":
        return Status() if not rest else Unknown(replies.takes_nothing("status"))
    if verb == "diagnose":
        if not rest:
            return Diagnose()
        if len(rest) > 1:
            return Unknown(replies.ONE_AT_A_TIME)
        if mention := _MENTION.match(rest[0]):
            return Diagnose(slack_user_id=mention["id"])
        if email := _EMAIL.match(rest[0]):
            return Diagnose(email=email["email"].lower())
        return Unknown(replies.unknown_person(rest[0]))
    return Unknown(replies.unknown_command(verb))
