"""A fake Redmine REST API (aiohttp, 127.0.0.1, ephemeral port): POST /issues.json and
PUT /issues/:id.json (notes only, 204 like Redmine).

Checks the X-Redmine-API-Key header like Redmine does (401 otherwise), validates that an
issue has a subject, records every issue, and can fail with HTTP 5xx on demand.
"""

from __future__ import annotations

import itertools
from typing import Any

from aiohttp import web

API_KEY = "redmine-test-key"


class FakeRedmine:
    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.issues: list[dict[str, Any]] = []
        self.notes: dict[int, list[str]] = {}  # issue id -> notes added, in order
        self.headers: list[dict[str, str]] = []
        self.fail_next = 0
        self._ids = itertools.count(41)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeRedmine:
        app = web.Application()
        app.router.add_post("/issues.json", self._create)
        app.router.add_put("/issues/{id}.json", self._update)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _create(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        if request.headers.get("X-Redmine-API-Key") != self.api_key:
            return web.Response(status=401)
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=503, text="maintenance")
        data = await request.json()
        issue = data.get("issue") if isinstance(data, dict) else None
        if not isinstance(issue, dict) or not issue.get("subject"):
            return web.json_response({"errors": ["Subject cannot be blank"]}, status=422)
        issue = {"id": next(self._ids), **issue}
        self.issues.append(issue)
        return web.json_response({"issue": issue}, status=201)

    async def _update(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        if request.headers.get("X-Redmine-API-Key") != self.api_key:
            return web.Response(status=401)
        issue_id = int(request.match_info["id"])
        if all(i["id"] != issue_id for i in self.issues):
            return web.Response(status=404)
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=503, text="maintenance")
        data = await request.json()
        notes = (data.get("issue") or {}).get("notes") if isinstance(data, dict) else None
        if notes:
            self.notes.setdefault(issue_id, []).append(str(notes))
        return web.Response(status=204)
