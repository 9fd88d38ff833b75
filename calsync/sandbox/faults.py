"""Fault injection the emulators share: how the world's faults change one request's answer.

`World.take_faults` says which faults apply to a request; this module carries them out the same way
in every emulator (Google, Microsoft, Slack). Each emulator supplies only what is its own: the answer
a fault gives in its wire format (`answer`), and, where it differs, what a timed-out hang answers.

- `latency`: the answer waits `seconds` first
- `hang`: no answer for `seconds` (default 60), or until the client gives up (logged as 499)
- `hold`: like `hang`, but it also ends once the fault is removed (`World.remove_fault`,
  `clear_faults`), and then the request is answered as usual: a latch a test opens when it wants
- any other kind: the emulator's `answer` for it, or no change (a kind that means nothing there)
- `short_list` (`short_list`): a successful list answered without its first `drop` items
- `lost_response` (`lose_answer`): the request is carried out, but its answer replaced by an error
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from calsync.sandbox.world import FaultHit

DEFAULT_HANG_SECONDS = 60.0
CLIENT_CLOSED = 499  # logged when the client gave up during an emulated hang

# The answer a fault gives in one emulator's wire format; None: this fault changes nothing there.
FaultAnswer = Callable[[FaultHit], Response | None]


async def hang(
    request: Request,
    seconds: float,
    *,
    poll: float = 0.05,
    released: Callable[[], Awaitable[bool]] | None = None,
) -> bool:
    """Answer nothing for `seconds`, like a stuck backend. True when the client gave up first.

    The wait ends early once the client disconnects, so a stopped test server is not kept waiting,
    or once `released` says so. The request body must have been read before (the disconnect arrives
    on the same channel).
    """
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await asyncio.sleep(min(poll, left))
        if await request.is_disconnected():
            return True
        if released is not None and await released():
            return False


def _client_closed(gave_up: bool) -> Response | None:
    """After a hang: the client's giving up is logged as 499; a hang sat out changes nothing."""
    return Response(status_code=CLIENT_CLOSED) if gave_up else None


async def _hold(
    request: Request, hit: FaultHit, still_there: Callable[[int], Awaitable[bool]] | None
) -> bool:
    """A `hold`: a hang that also ends once its fault is gone. True when the client gave up first."""
    seconds = float(hit.params.get("seconds", DEFAULT_HANG_SECONDS))
    fault_id = hit.fault_id
    if still_there is None or fault_id is None:
        return await hang(request, seconds)
    check = still_there

    async def released() -> bool:
        return not await check(fault_id)

    return await hang(request, seconds, released=released)


async def apply_faults(
    request: Request,
    hits: list[FaultHit],
    answer: FaultAnswer,
    *,
    latency_seconds: float = 1.0,
    after_hang: Callable[[bool], Response | None] = _client_closed,
    still_there: Callable[[int], Awaitable[bool]] | None = None,
) -> Response | None:
    """Apply one request's faults in order; the response of the first fault that answers, if any.

    `latency_seconds`: a `latency` fault's wait when it names none; `after_hang`: what answers once a
    hang is over (given whether the client gave up), None to go on; `still_there`: whether a fault
    (by id) still exists, which a `hold` asks (without it a hold is a hang)."""
    for hit in hits:
        if hit.kind == "latency":
            await asyncio.sleep(float(hit.params.get("seconds", latency_seconds)))
        elif hit.kind == "hang":
            gave_up = await hang(request, float(hit.params.get("seconds", DEFAULT_HANG_SECONDS)))
            response = after_hang(gave_up)
            if response is not None:
                return response
        elif hit.kind == "hold":
            if await _hold(request, hit, still_there):
                return Response(status_code=CLIENT_CLOSED)
        else:
            response = answer(hit)
            if response is not None:
                return response
    return None


def short_list(hits: list[FaultHit], response: Response, key: str) -> Response:
    """A `short_list` fault: a successful list answered without its first `drop` items (default: all
    of them) — what a lagging replica or a lost page looks like. Other answers pass unchanged."""
    hit = next((hit for hit in hits if hit.kind == "short_list"), None)
    if hit is None or response.status_code != 200:
        return response
    try:
        body = json.loads(bytes(response.body))
    except ValueError:
        return response
    items = body.get(key) if isinstance(body, dict) else None
    if not isinstance(items, list):
        return response
    body[key] = items[int(hit.params.get("drop", len(items))) :]
    return JSONResponse(body)


def lose_response(hits: list[FaultHit], status: int) -> int | None:
    """The status that replaces a successful answer when a `lost_response` fault applies, else None.

    Such a request has been carried out (an event inserted, say) but the client never hears so: what
    a crash or a dropped connection between the provider's write and our commit looks like."""
    if not 200 <= status < 300:
        return None
    lost = next((hit for hit in hits if hit.kind == "lost_response"), None)
    return int(lost.params.get("status", 503)) if lost is not None else None


def lost_response_wait(hits: list[FaultHit]) -> float:
    """Seconds a `lost_response` answer is held back (`after_seconds`): a worker can die meanwhile."""
    lost = next((hit for hit in hits if hit.kind == "lost_response"), None)
    return float(lost.params.get("after_seconds", 0.0)) if lost is not None else 0.0


async def lose_answer(
    request: Request, hits: list[FaultHit], response: Response, error: Callable[[int], Response]
) -> Response:
    """`response`, or under a `lost_response` fault (after its wait) `error(status)` in its stead."""
    lost = lose_response(hits, response.status_code)
    if lost is None:
        return response
    await hang(request, lost_response_wait(hits))
    return error(lost)


__all__ = [
    "CLIENT_CLOSED",
    "DEFAULT_HANG_SECONDS",
    "FaultAnswer",
    "FaultHit",
    "apply_faults",
    "hang",
    "lose_answer",
    "lose_response",
    "lost_response_wait",
    "short_list",
]
