"""The `imgsvc` command: serve the API, or talk to a running service."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from .config import Settings, SettingsError

DEFAULT_SERVER = "http://127.0.0.1:8000"
STARTUP_FAILURE = 3  # uvicorn's exit status when the app could not start


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except SettingsError as exc:
        sys.exit(f"imgsvc: {exc}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imgsvc",
        description="Compress the product images listed in a CSV, and write a results CSV.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the service (settings: IMGSVC_* variables)")
    serve.add_argument("--host", help="address to listen on (IMGSVC_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (IMGSVC_PORT, 8000)")
    serve.add_argument("--data-dir", type=Path, help="SQLite file and images (IMGSVC_DATA_DIR)")
    serve.add_argument("--public-url", help="base of URLs in results (IMGSVC_PUBLIC_URL)")
    serve.add_argument("--cpu-workers", type=int, help="Pillow threads (IMGSVC_CPU_WORKERS)")
    serve.add_argument(
        "--fetch-concurrency", type=int, help="downloads in flight (IMGSVC_FETCH_CONCURRENCY)"
    )
    serve.set_defaults(run=_serve)

    for name, text in (("submit", "upload a CSV and print the answer"),
                       ("status", "print the status of a request")):  # fmt: skip
        sub = commands.add_parser(name, help=text)
        sub.add_argument("target", metavar="FILE.csv" if name == "submit" else "ID")
        sub.add_argument(
            "--server", default=os.environ.get("IMGSVC_SERVER", DEFAULT_SERVER),
            help=f"the service's base URL (IMGSVC_SERVER, {DEFAULT_SERVER})",
        )  # fmt: skip
        sub.set_defaults(run=_submit if name == "submit" else _status)
    return parser


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from .app import create_app
    from .lifecycle import DataDirInUse, GracefulServer, check_free

    settings = Settings.from_env(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        public_url=args.public_url.rstrip("/") if args.public_url else None,
        cpu_workers=args.cpu_workers,
        fetch_concurrency=args.fetch_concurrency,
    )
    try:
        check_free(settings.data_dir)
    except DataDirInUse as exc:
        sys.exit(f"imgsvc: {exc}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level="info",
        timeout_graceful_shutdown=10,
    )
    server = GracefulServer(config, app.state.lifecycle)
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def _submit(args: argparse.Namespace) -> None:
    data = Path(args.target).read_bytes()
    _print(_call("POST", f"{args.server}/api/upload", data, "text/csv"))


def _status(args: argparse.Namespace) -> None:
    _print(_call("GET", f"{args.server}/api/status/{urllib.parse.quote(args.target)}"))


def _call(method: str, url: str, data: bytes | None = None, ctype: str = "") -> Any:
    headers = {"Content-Type": ctype} if ctype else {}
    request = urllib.request.Request(url, data, headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return json.load(response)
    except urllib.error.HTTPError as exc:
        body = json.load(exc)
        sys.exit(f"imgsvc: {body.get('detail', exc.reason)}")
    except urllib.error.URLError as exc:
        sys.exit(f"imgsvc: cannot reach {url}: {exc.reason}")


def _print(body: Any) -> None:
    print(json.dumps(body, indent=2))
