"""Slack's side of Socket Mode, for the Slack emulator: `apps.connections.open` mints a one-use
WebSocket URL (`ws://127.0.0.1:<port>/link/?ticket=…`), and the app connecting to it gets
`{"type": "hello", …}`, then whatever envelopes a test pushes (`events_api`, `slash_commands`,
`interactive`), each answered by the app with an ack `{"envelope_id": …, "payload": …}`, which is
recorded. `disconnect()` sends Slack's `{"type": "disconnect", "reason": …}`, after which the app
opens a new connection (as slack_sdk's Socket Mode clients do) and the old one is closed.

The connections live on the emulator's event loop (its server thread); `push`, `acks`,
`wait_for_ack`, `wait_for_connections` and `disconnect` are called from any other thread (a test's).
What happens on the sockets is kept in memory, not in the world: it exists only while the app is
connected to this emulator process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

ENVELOPE_TYPES = ("events_api", "slash_commands", "interactive")
# Slack's default for each envelope type (an interactive payload may also set it, e.g. view_submission).
ACCEPTS_RESPONSE_PAYLOAD = {"events_api": False, "slash_commands": True, "interactive": False}
SEND_TIMEOUT = 5.0


@dataclass(frozen=True)
class SocketModeAck:
    """What the app sent back for one envelope: its id and the response payload, if any."""

    envelope_id: str
    payload: dict[str, Any] | None
    connection: int  # which connection it came on (1, 2, … in the order they were opened)


@dataclass
class _Connection:
    number: int
    socket: WebSocket
    loop: asyncio.AbstractEventLoop
    told_to_disconnect: bool = False


class SocketModeHub:
    """The emulator's WebSocket endpoint (`/link/`) and the envelopes and acks that cross it."""

    def __init__(self, *, app_token: str, app_id: str) -> None:
        self.app_token = app_token
        self.app_id = app_id
        self._tickets: set[str] = set()
        self._connections: list[_Connection] = []
        self._opened = itertools.count(1)
        self._acks: list[SocketModeAck] = []
        self._unreadable: list[str] = []  # messages from the app that were not JSON objects
        self._envelope_ids = itertools.count(1)
        self._changed = threading.Condition()

    # -- Slack's side -------------------------------------------------------------------------------

    def open_url(self, base_url: str) -> str:
        """A fresh one-use WebSocket URL on this emulator (`base_url` is its http://host:port/)."""
        ticket = secrets.token_urlsafe(16)
        with self._changed:
            self._tickets.add(ticket)
        host = base_url.split("://", 1)[1].rstrip("/")
        return f"ws://{host}/link/?ticket={ticket}&app_id={self.app_id}"

    async def serve(self, socket: WebSocket) -> None:
        """One connection: refused without a ticket `apps.connections.open` gave out (and not used yet);
        otherwise hello, then every message from the app is recorded until it goes away."""
        ticket = socket.query_params.get("ticket", "")
        with self._changed:
            known = ticket in self._tickets
            self._tickets.discard(ticket)
        if not known:
            await socket.close(code=1008)  # before accept: the handshake is refused (HTTP 403)
            return
        await socket.accept()
        connection = _Connection(next(self._opened), socket, asyncio.get_running_loop())
        with self._changed:
            hello = self._hello(len(self._connections) + 1)
        await socket.send_text(json.dumps(hello))
        with self._changed:
            self._connections.append(connection)
            self._changed.notify_all()
        try:
            while True:
                self._received(connection, await socket.receive_text())
        except WebSocketDisconnect:
            pass
        finally:
            with self._changed:
                self._connections.remove(connection)
                self._changed.notify_all()

    def _hello(self, connections: int) -> dict[str, Any]:
        return {
            "type": "hello",
            "num_connections": connections,
            "debug_info": {"host": "applink-sandbox", "approximate_connection_time": 3600},
            "connection_info": {"app_id": self.app_id},
        }

    def _received(self, connection: _Connection, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        with self._changed:
            if isinstance(message, dict) and isinstance(message.get("envelope_id"), str):
                payload = message.get("payload")
                self._acks.append(
                    SocketModeAck(
                        message["envelope_id"],
                        payload if isinstance(payload, dict) else None,
                        connection.number,
                    )
                )
            else:
                self._unreadable.append(text)
            self._changed.notify_all()

    # -- the test's side ----------------------------------------------------------------------------

    def push(
        self,
        envelope_type: str,
        payload: dict[str, Any],
        *,
        envelope_id: str | None = None,
        accepts_response_payload: bool | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
        timeout: float = SEND_TIMEOUT,
    ) -> str:
        """Send one envelope on the newest open connection (waiting up to `timeout` for one); its id.
        Pass the same `envelope_id` and a `retry_attempt` to redeliver, as Slack does when no ack came."""
        if envelope_type not in ENVELOPE_TYPES:
            raise ValueError(f"not a Socket Mode envelope type: {envelope_type!r}")
        envelope_id = envelope_id or f"sandbox-envelope-{next(self._envelope_ids)}-{secrets.token_hex(4)}"
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id,
            "type": envelope_type,
            "payload": payload,
            "accepts_response_payload": ACCEPTS_RESPONSE_PAYLOAD[envelope_type]
            if accepts_response_payload is None
            else accepts_response_payload,
        }
        if envelope_type == "events_api":
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = retry_reason
        connection = self._current(timeout)
        self._send(connection, connection.socket.send_text(json.dumps(envelope)), timeout)
        return envelope_id

    def disconnect(self, reason: str = "refresh_requested", *, timeout: float = SEND_TIMEOUT) -> int:
        """Tell the newest connection to go away, as Slack does before it refreshes one (`reason`:
        `refresh_requested`, `warning`, `link_disabled`); its number. It is closed once the app has
        opened another (or after `timeout`, for `link_disabled`, where the app should not come back)."""
        connection = self._current(timeout)
        with self._changed:
            connection.told_to_disconnect = True
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-sandbox"}}
        self._send(connection, connection.socket.send_text(json.dumps(message)), timeout)
        if reason != "warning":
            with self._changed:
                self._changed.wait_for(
                    lambda: (
                        any(c.number > connection.number for c in self._connections)
                        or connection not in self._connections
                    ),
                    timeout,
                )
                still_open = connection in self._connections
            if still_open:
                with contextlib.suppress(RuntimeError):  # the app closed it meanwhile
                    self._send(connection, connection.socket.close(code=1000), timeout)
        return connection.number

    def acks(self, envelope_id: str | None = None) -> list[SocketModeAck]:
        """The acks received so far, in order (of one envelope, with `envelope_id`)."""
        with self._changed:
            return [a for a in self._acks if envelope_id is None or a.envelope_id == envelope_id]

    def wait_for_ack(self, envelope_id: str, timeout: float = SEND_TIMEOUT) -> SocketModeAck:
        with self._changed:
            if not self._changed.wait_for(lambda: self._first_ack(envelope_id) is not None, timeout):
                raise TimeoutError(f"no ack for envelope {envelope_id} in {timeout} s")
            found = self._first_ack(envelope_id)
            assert found is not None
            return found

    def _first_ack(self, envelope_id: str) -> SocketModeAck | None:
        return next((a for a in self._acks if a.envelope_id == envelope_id), None)

    def unreadable(self) -> list[str]:
        """Messages from the app that were no ack (not a JSON object with an envelope_id)."""
        with self._changed:
            return list(self._unreadable)

    def connections(self) -> list[int]:
        """The numbers of the connections open now."""
        with self._changed:
            return [c.number for c in self._connections]

    def wait_for_connections(self, count: int = 1, timeout: float = 10.0) -> list[int]:
        """The open connections once there are `count` (beside any told to go away)."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._ready()) >= count, timeout):
                raise TimeoutError(f"fewer than {count} Socket Mode connections after {timeout} s")
            return [c.number for c in self._ready()]

    def _ready(self) -> list[_Connection]:
        return [c for c in self._connections if not c.told_to_disconnect]

    def _current(self, timeout: float) -> _Connection:
        deadline = time.monotonic() + timeout
        with self._changed:
            if not self._changed.wait_for(lambda: bool(self._ready()), max(0.0, deadline - time.monotonic())):
                raise TimeoutError("no app is connected over Socket Mode")
            return self._ready()[-1]

    @staticmethod
    def _send(connection: _Connection, send: Coroutine[Any, Any, None], timeout: float) -> None:
        asyncio.run_coroutine_threadsafe(send, connection.loop).result(timeout)
