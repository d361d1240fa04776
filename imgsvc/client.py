"""Talking to a running service from the command line: upload, status, and a live watch.

Only the standard library: the CLI must work wherever the package installs, and one
upload plus one event stream need nothing more than urllib.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from . import paths

TIMEOUT = 60.0  # seconds without a byte from the service; the stream sends keep-alives


class ClientError(Exception):
    """The service refused the request or could not be reached; the message says which."""


def call(method: str, url: str, data: bytes | None = None, content_type: str = "") -> Any:
    """One JSON request; ClientError with the service's `detail` (and problems) on refusal."""
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data, headers | _auth(), method=method)  # noqa: S310
    with _open(request) as response:
        return json.load(response)


def _open(request: urllib.request.Request) -> Any:
    """The response, or ClientError saying why there is none."""
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT)  # noqa: S310
    except urllib.error.HTTPError as exc:
        raise ClientError(_refusal(exc)) from None
    except urllib.error.URLError as exc:
        raise ClientError(f"cannot reach {request.full_url}: {exc.reason}") from None


def upload(server: str, path: Path, options: dict[str, str]) -> dict[str, Any]:
    """Send a CSV as a `text/csv` body with its options as query parameters."""
    query = urllib.parse.urlencode({k: v for k, v in options.items() if v})
    url = server + paths.UPLOAD + (f"?{query}" if query else "")
    answer: dict[str, Any] = call("POST", url, path.read_bytes(), "text/csv")
    return answer


def events(url: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of a server-sent event stream, until the server ends it."""
    headers = {"Accept": "text/event-stream"} | _auth()
    request = urllib.request.Request(url, headers=headers)  # noqa: S310
    with _open(request) as response:
        event, data = "message", ""
        for raw in response:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
            elif not line and data:
                yield event, json.loads(data)
                event, data = "message", ""


def progress_line(status: dict[str, Any], width: int = 30) -> str:
    """`[#######-------]  45.0%  9/20 images  processing` for one status object."""
    progress = status["progress"]
    filled = round(width * progress["percentage"] / 100)
    failed = f", {progress['failed_images']} failed" if progress["failed_images"] else ""
    return (
        f"[{'#' * filled}{'-' * (width - filled)}] {progress['percentage']:5.1f}%  "
        f"{progress['processed_images']}/{progress['total_images']} images{failed}  "
        f"{status['status']}"
    )


def watch(events_url: str, out: IO[str] = sys.stderr) -> dict[str, Any]:
    """Draw a progress bar from the event stream until `done`; the final status."""
    live = out.isatty()  # redraw one line on a terminal; print each step in a log
    final: dict[str, Any] | None = None
    last = ""
    for event, data in events(events_url):
        if event == "error":
            raise ClientError(data.get("detail", "the job disappeared"))
        if (line := progress_line(data)) != last:
            out.write(f"\r{line}\033[K" if live else f"{line}\n")
            out.flush()
            last = line
        if event == "done":
            final = data
            break
    if live:
        out.write("\n")
    if final is None:
        raise ClientError("the event stream ended before the job did")
    return final


def _refusal(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.load(exc)
    except ValueError:
        return f"HTTP {exc.code} {exc.reason}"
    problems = [f"  {_where(p)}{p.get('message')}" for p in body.get("errors", [])]
    return "\n".join([str(body.get("detail", exc.reason)), *problems])


def _where(problem: dict[str, Any]) -> str:
    """`line 4, Input Image Urls: ` for a CSV problem, leaving out what is unknown."""
    parts = [f"line {problem['line']}"] if problem.get("line") else []
    parts += [problem["column"]] if problem.get("column") else []
    return f"{', '.join(parts)}: " if parts else ""


def _auth() -> dict[str, str]:
    """The Authorization header when IMGSVC_API_KEY holds one of the service's keys."""
    key = os.environ.get("IMGSVC_API_KEY", "").strip()
    return {"Authorization": f"Bearer {key}"} if key else {}
