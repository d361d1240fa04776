"""The `imgsvc` command: serve the API, or talk to a running service."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from . import client, paths
from .config import Settings, SettingsError
from .models import OutputFormat

DEFAULT_SERVER = "http://127.0.0.1:8000"
FAILED, UNREACHABLE = 1, 2  # exit codes: the job failed; the service refused or is away
EPILOG = """\
examples:
  imgsvc serve --port 8000 --data-dir ./storage
  imgsvc submit products.csv --watch          # upload, show progress, print the results
  imgsvc submit products.csv --quality 70 --format avif
  imgsvc submit products.csv --sizes 1600,800,300   # also three smaller outputs per image
  imgsvc status 3f0c9a...                     # the status object as JSON

exit status: 0 when the job completed (some images may have failed; the output says how
many), 1 when it failed or was cancelled, 2 when the service refused the request or could
not be reached. IMGSVC_SERVER sets the default --server.
"""
STARTUP_FAILURE = 3  # uvicorn's exit status when the app could not start


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except SettingsError as exc:
        sys.exit(f"imgsvc: {exc}")
    except client.ClientError as exc:
        print(f"imgsvc: {exc}", file=sys.stderr)
        sys.exit(UNREACHABLE)
    except KeyboardInterrupt:
        sys.exit(130)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imgsvc",
        description="Compress the product images listed in a CSV, and write a results CSV.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    _add_serve(commands)
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument(
        "--server", default=os.environ.get("IMGSVC_SERVER", DEFAULT_SERVER),
        help=f"the service's base URL (IMGSVC_SERVER; default {DEFAULT_SERVER})",
    )  # fmt: skip
    server.add_argument(
        "--watch", action="store_true",
        help="show a progress bar until the job ends, then print where the results are",
    )  # fmt: skip

    submit = commands.add_parser(
        "submit", parents=[server], help="upload a CSV; with --watch, follow it to the end",
        description="Upload a CSV of products and image URLs. Prints the answer as JSON, "
        "or with --watch a progress bar and the results' URLs.",
    )  # fmt: skip
    submit.add_argument("file", type=Path, metavar="FILE.csv", help="the products CSV")
    submit.add_argument("--quality", type=int, help="output quality, 1-95 (default 50)")
    # Plain strings: argparse names enum members by their repr in its error message.
    submit.add_argument(
        "--format", choices=[f.value for f in OutputFormat], help="output format (jpeg)"
    )
    submit.add_argument(
        "--progressive", action="store_true",
        help="progressive JPEG: a blurred whole image first, sharpened as it loads",
    )  # fmt: skip
    submit.add_argument("--max-dimension", type=int, help="longest side of outputs, px")
    # Checked by the service, whose 400 names what is wrong with the list.
    submit.add_argument(
        "--sizes", metavar="PX,PX,...",
        help="up to 5 longest sides, e.g. 1600,800,300: one more output per size and image",
    )  # fmt: skip
    submit.add_argument(
        "--no-reuse", action="store_true",
        help="make every image again, even those unchanged since an earlier job",
    )  # fmt: skip
    submit.add_argument("--webhook-url", help="called when the job ends")
    submit.set_defaults(run=_submit)

    status = commands.add_parser(
        "status", parents=[server], help="print the status of a request as JSON"
    )
    status.add_argument("request_id", metavar="ID", help="the request id submit printed")
    status.set_defaults(run=_status)

    secret = commands.add_parser(
        "webhook-secret", help="print the secret that signs webhooks (generated if there is none)"
    )
    secret.add_argument("--data-dir", type=Path, help="the service's data folder (IMGSVC_DATA_DIR)")
    secret.set_defaults(run=_webhook_secret)
    return parser


def _add_serve(commands: Any) -> None:
    serve = commands.add_parser(
        "serve", help="run the service",
        description="Run the service. Flags override the IMGSVC_* variables named in brackets.",
    )  # fmt: skip
    flag = serve.add_argument
    flag("--host", help="address to listen on [IMGSVC_HOST] (127.0.0.1)")
    flag("--port", type=int, help="port to listen on [IMGSVC_PORT] (8000)")
    flag("--data-dir", type=Path, help="SQLite file and images [IMGSVC_DATA_DIR] (./storage)")
    flag("--public-url", help="base of the URLs in results [IMGSVC_PUBLIC_URL]")
    flag("--jpeg-quality", type=int, help="default quality, 1-95 [IMGSVC_JPEG_QUALITY] (50)")
    flag("--job-workers", type=int, help="jobs run at once [IMGSVC_JOB_WORKERS] (4)")
    flag("--cpu-workers", type=int, help="Pillow threads [IMGSVC_CPU_WORKERS] (cores)")
    flag("--fetch-concurrency", type=int,
         help="downloads in flight at most [IMGSVC_FETCH_CONCURRENCY] (256)")  # fmt: skip
    flag("--fetch-per-host", type=int,
         help="connections to one image host [IMGSVC_FETCH_PER_HOST] (8)")  # fmt: skip
    flag("--allow-private-urls", action="store_true", default=None,
         help="fetch from private and loopback addresses, for development "
              "[IMGSVC_ALLOW_PRIVATE_URLS]")  # fmt: skip
    flag("--log-format", choices=["auto", "json", "text"], default="auto",
         help="log lines as JSON or text; auto: text on a terminal, else JSON")  # fmt: skip
    flag("--log-level", choices=["debug", "info", "warning", "error"], default="info",
         help="the least severe lines logged; debug adds probes and answered polls")  # fmt: skip
    serve.set_defaults(run=_serve)


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from . import logs
    from .app import create_app
    from .lifecycle import DataDirInUse, GracefulServer, check_free

    settings = Settings.from_env(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        public_url=args.public_url.rstrip("/") if args.public_url else None,
        jpeg_quality=args.jpeg_quality,
        job_workers=args.job_workers,
        cpu_workers=args.cpu_workers,
        fetch_concurrency=args.fetch_concurrency,
        fetch_per_host=args.fetch_per_host,
        allow_private_urls=args.allow_private_urls,
    )
    try:
        check_free(settings.data_dir)
    except DataDirInUse as exc:
        sys.exit(f"imgsvc: {exc}")
    logs.configure(
        None if args.log_format == "auto" else args.log_format == "json",
        logging.getLevelNamesMapping()[args.log_level.upper()],
    )
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_config=None,  # keep the handlers logs.configure set
        access_log=False,  # the request middleware logs each request, with its id
        timeout_graceful_shutdown=10,
    )
    server = GracefulServer(config, app.state.lifecycle)
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def _submit(args: argparse.Namespace) -> None:
    if not args.file.is_file():
        raise client.ClientError(f"{args.file}: no such file")
    options = {
        "quality": str(args.quality or ""),
        "format": args.format or "",
        "progressive": "true" if args.progressive else "",
        "max_dimension": str(args.max_dimension or ""),
        "sizes": args.sizes or "",
        "webhook_url": args.webhook_url or "",
        "reuse": "false" if args.no_reuse else "",
    }
    answer = client.upload(args.server.rstrip("/"), args.file, options)
    if not args.watch:
        _print(answer)
        return
    print(f"{answer['message']}; request id {answer['request_id']}", file=sys.stderr)
    _finish(client.watch(answer["events_url"]))


def _status(args: argparse.Namespace) -> None:
    server = args.server.rstrip("/")
    if args.watch:  # an ended job's stream gives its final state and links at once
        _finish(client.watch(server + paths.fill(paths.EVENTS, request_id=args.request_id)))
        return
    _print(client.call("GET", server + paths.fill(paths.STATUS, request_id=args.request_id)))


def _webhook_secret(args: argparse.Namespace) -> None:
    from .db import open_database
    from .pipeline.webhooks import signing_secrets

    async def read(settings: Settings) -> list[str]:
        db = await open_database(settings, serving=False)
        try:
            return await signing_secrets(settings, db)
        finally:
            await db.close()

    for secret in asyncio.run(read(Settings.from_env(data_dir=args.data_dir))):
        print(secret)


def _finish(final: dict[str, Any]) -> None:
    """Print the outcome and where the results are; exit 1 unless the job completed."""
    print(final["message"])
    if final["status"] != "completed":
        sys.exit(FAILED)
    print(f"results CSV: {final['download_url']}")
    print(f"all images:  {final['archive_url']}")
    print(f"details:     {final['details_url']}")


def _print(body: Any) -> None:
    print(json.dumps(body, indent=2))
