"""What every webhook route on our web server shares: a body read within a size limit."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

MAX_BODY = 1_000_000  # bytes; real webhooks and updates are a few kilobytes


async def limited_body(request: Request, limit: int = MAX_BODY) -> bytes | Response:
    """The body, or the response that refuses it. It is read as it streams in, so neither
    a chunked body (no Content-Length) nor a Content-Length that lies gets more than `limit`
    bytes into memory; a Content-Length that is not a number is the sender's error (400)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            return Response(status_code=400)
        if int(declared) > limit:
            return Response(status_code=413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return Response(status_code=413)
        chunks.append(chunk)
    return b"".join(chunks)
