"""A bare Bolt app, the yardstick for calsync's acks (benchmarks/scale_bench.py).

A minimal slack_bolt `AsyncApp` with the signing secret, bot token and Slack API URL of the
environment (`SLACK_SIGNING_SECRET`, `SLACK_BOT_TOKEN`, `SLACK_API_URL`: what `calsync sandbox
serve` prints), served at `POST /slack/events` through Bolt's own FastAPI adapter by uvicorn with
calsync's settings (`calsync.app.make_http_server`). Its `message` and `app_mention` listeners do
nothing (Bolt acks events itself), its `/calsync` listener only acks: whatever it costs to ack is
Bolt, FastAPI and uvicorn, nothing of calsync's. Like `slackload.serve_app`, it prints one JSON
line (url, secret, slack_url, pid) once it listens, and serves until SIGTERM.

    .venv/bin/python benchmarks/bare_bolt.py [PORT]     # 0 (default): any free port
"""

import json
import os
import sys
import threading
import time
from pathlib import Path

from slackload import Child


def start_bare(env: dict[str, str], state: Path, name: str = "bare") -> Child:
    """The bare app in a child process; `slackload.read_app` waits for it."""
    return Child([sys.executable, str(Path(__file__).resolve()), "0"], env, state, state / f"{name}.log")


def serve_bare(port: int) -> None:
    from fastapi import FastAPI, Request, Response  # at run time: FastAPI reads the route's annotations
    from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
    from slack_bolt.async_app import AsyncAck, AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    from calsync.app import make_http_server

    secret = os.environ["SLACK_SIGNING_SECRET"]
    api_url = os.environ.get("SLACK_API_URL", "https://slack.com/api/")
    client = AsyncWebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=api_url)
    bolt = AsyncApp(signing_secret=secret, client=client)

    @bolt.event("message")
    async def on_message() -> None:
        """Acked by Bolt; nothing else."""

    @bolt.event("app_mention")
    async def on_mention() -> None:
        """Acked by Bolt; nothing else."""

    @bolt.command("/calsync")
    async def on_command(ack: AsyncAck) -> None:
        await ack()

    handler = AsyncSlackRequestHandler(bolt)
    web = FastAPI(docs_url=None, redoc_url=None)

    @web.post("/slack/events")
    async def slack_events(request: Request) -> Response:
        return await handler.handle(request)

    server = make_http_server(web, "127.0.0.1", port)

    def announce() -> None:
        while not server.started:
            time.sleep(0.02)
        bound = port or int(server.servers[0].sockets[0].getsockname()[1])
        line = {
            "url": f"http://127.0.0.1:{bound}",
            "secret": secret,
            "slack_url": api_url.removesuffix("/").removesuffix("/api"),
            "pid": os.getpid(),
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    threading.Thread(target=announce, daemon=True).start()
    server.run()


if __name__ == "__main__":
    serve_bare(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
