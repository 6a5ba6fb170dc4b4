"""Our webhook routes on a real uvicorn server, on a socket bound before it starts."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from aiohttp import web
from starlette.applications import Starlette
from starlette.routing import BaseRoute


@asynccontextmanager
async def serving(routes: list[BaseRoute]) -> AsyncIterator[str]:
    """Serve `routes` on an ephemeral 127.0.0.1 port; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(100)  # connections wait in the backlog until uvicorn accepts them
    port = sock.getsockname()[1]
    config = uvicorn.Config(Starlette(routes=routes), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def start_fake(app: web.Application) -> tuple[web.AppRunner, int]:
    """A fake platform API (aiohttp) on an ephemeral 127.0.0.1 port: its runner and port."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def raw_post(url: str, head: dict[str, str], body: bytes = b"") -> int:
    """POST with headers exactly as given (no client fixes a bad Content-Length up);
    returns the status the server answered."""
    host, _, rest = url.removeprefix("http://").partition("/")
    name, _, port = host.partition(":")
    reader, writer = await asyncio.open_connection(name, int(port))
    lines = [f"POST /{rest} HTTP/1.1", f"Host: {host}", "Connection: close",
             *(f"{k}: {v}" for k, v in head.items())]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    await writer.drain()
    status = await reader.readline()
    writer.close()
    return int(status.split()[1])
