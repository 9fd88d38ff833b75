"""`calsync match`: questions in, one JSON line per question out, in batches, as lines arrive.

A reader thread splits the input into lines; the writer takes whatever lines are waiting (at least
one, at most `max_batch`), matches them in one `match_many` call, writes and flushes. Piping a file
of thousands of lines goes through in big batches; a person typing gets each answer at once.
"""

from __future__ import annotations

import io
import json
import queue
import sys
import threading
from collections.abc import Iterable
from typing import BinaryIO, TextIO

from calsync.knowledge.matcher import Match, Matcher

__all__ = ["match_record", "read_lines", "stream_match", "utf8_stdout"]

_EOF = None


def read_lines(source: BinaryIO) -> Iterable[str]:
    """Lines of `source` as text: UTF-8 (bad bytes replaced), trailing "\\r\\n" or "\\n" stripped.

    Only "\\n" ends a line (a stray "\\r" inside one does not), so outputs line up with inputs.
    """
    for raw in source:
        if raw.endswith(b"\n"):
            raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        yield raw.decode("utf-8", errors="replace")


def match_record(question: str, match: Match) -> str:
    """One output line: exactly `{"question", "article", "confidence"}`, in that order."""
    record = {"question": question, "article": match.article, "confidence": round(match.confidence, 4)}
    return json.dumps(record, ensure_ascii=False)


def stream_match(matcher: Matcher, source: BinaryIO, sink: TextIO, max_batch: int = 512) -> int:
    """Match every line of `source` and write the JSON lines to `sink`; returns the line count."""
    lines: queue.Queue[str | None] = queue.Queue(maxsize=max_batch * 4)

    def reader() -> None:
        try:
            for line in read_lines(source):
                lines.put(line)
        finally:
            lines.put(_EOF)

    threading.Thread(target=reader, name="calsync-match-reader", daemon=True).start()
    written = 0
    done = False
    while not done:
        first = lines.get()
        if first is _EOF:
            break
        batch = [first]
        while len(batch) < max_batch:
            try:
                line = lines.get_nowait()
            except queue.Empty:
                break
            if line is _EOF:
                done = True
                break
            batch.append(line)
        matches = matcher.match_many(batch)
        sink.write("".join(match_record(q, m) + "\n" for q, m in zip(batch, matches, strict=True)))
        sink.flush()
        written += len(batch)
    return written


def utf8_stdout(text: bool = False) -> TextIO:
    """stdout made safe to write to: UTF-8 for JSON (whatever the locale says); for text meant for a
    person, the terminal's own encoding with unencodable characters replaced instead of a crash."""
    out = sys.stdout
    if isinstance(out, io.TextIOWrapper):
        if text:
            out.reconfigure(errors="replace")
        else:
            out.reconfigure(encoding="utf-8", errors="strict")
    return out
