"""Logs: one JSON object per line for machines, plain lines for a person at a terminal.

Every line carries the request id of the HTTP request and the job id of the job it
happened in, taken from context variables, so a request or a job can be followed with
one grep. The middleware here gives each request its id and echoes it as `X-Request-ID`.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from contextvars import ContextVar
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import paths

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
JOB_ID: ContextVar[str | None] = ContextVar("job_id", default=None)

# A client's own id is kept when it is safe to write into logs and headers.
CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
QUIET_PATHS = (paths.LIVEZ, paths.READYZ, paths.METRICS)  # probes and scrapes: logged at debug
# Reads a client repeats or many clients make at once (status polls, event streams): at
# debug when answered, as 20 pollers would fill the log, and the line cost a tenth of a
# poll; an error answer still shows at info.
POLLED_PREFIXES = tuple(p.removesuffix("{request_id}") for p in (paths.STATUS, paths.EVENTS))
# Attributes every record has, and uvicorn's terminal-coloured copy of its message.
RECORD_FIELDS = {*vars(logging.makeLogRecord({})), "color_message"}

log = logging.getLogger("imgsvc.http")


class JsonFormatter(logging.Formatter):
    """A log record as one JSON line: time, level, logger, message, ids, and `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, var in (("request_id", REQUEST_ID), ("job_id", JOB_ID)):
            if (value := var.get()) is not None:
                line[name] = value
        line.update({k: v for k, v in vars(record).items() if k not in RECORD_FIELDS})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


JsonFormatter.converter = time.gmtime


class TextFormatter(logging.Formatter):
    """A readable line with the ids in brackets when there are any."""

    def format(self, record: logging.LogRecord) -> str:
        ids = " ".join(
            f"{name}={value}"
            for name, value in (("req", REQUEST_ID.get()), ("job", JOB_ID.get()))
            if value is not None
        )
        record.ids = f" [{ids}]" if ids else ""
        return super().format(record)


def configure(json_lines: bool | None = None, level: int = logging.INFO) -> None:
    """Log to stderr: JSON lines unless stderr is a terminal (or as `json_lines` says)."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else TextFormatter("%(asctime)s %(levelname)-7s %(name)s%(ids)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's own access lines would repeat ours without the ids.
    logging.getLogger("uvicorn.access").disabled = True


class RequestIdMiddleware:
    """Give each request an id (the client's `X-Request-ID` if sane), echo it, log the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if CLIENT_ID.fullmatch(given) else secrets.token_hex(16)
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            method, path = scope["method"], scope["path"]
            level = access_level(method, path, status)
            if log.isEnabledFor(level):
                log.log(
                    level, "%s %s %d", method, path, status,
                    extra={"method": method, "path": path, "status": status,
                           "duration_ms": round(1000 * (time.perf_counter() - started), 1)},
                )  # fmt: skip
            REQUEST_ID.reset(token)


def access_level(method: str, path: str, status: int) -> int:
    """The level of a request's log line: debug for probes, scrapes and answered polls
    (status, events), info for everything else, every request that changes a job and
    every error among them."""
    polled = method in ("GET", "HEAD") and path.startswith(POLLED_PREFIXES) and status < 400
    return logging.DEBUG if polled or path in QUIET_PATHS else logging.INFO
