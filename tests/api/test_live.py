"""Live progress, the zip, metrics, request ids, logs and the API docs, as a user meets them."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import re
import sqlite3
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp import web

from imgsvc import logs

from ..conftest import (
    ImageHost,
    Receiver,
    Service,
    jpeg_bytes,
    running_service,
    settings_for,
)
from ..gated import gated_host

pytestmark = pytest.mark.anyio


async def read_events(service: Service, request_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every event of the stream, in order, until the server closes it."""
    found: list[tuple[str, dict[str, Any]]] = []
    url = f"{service.url}/api/events/{request_id}"
    async with asyncio.timeout(60), service.client.get(url) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        event = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                found.append((event, json.loads(line[6:])))
    return found


async def slow_csv(image_host: ImageHost, count: int) -> str:
    """A CSV whose images come slowly, so that progress has steps to show."""

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.3 * int(request.path[6:-4]))
        return web.Response(body=jpeg_bytes(200, 150), content_type="image/jpeg")

    urls = [image_host.route(f"/slow/{n}.jpg", slow) for n in range(1, count + 1)]
    rows = "".join(f'{n},SKU{n},"{url}"\n' for n, url in enumerate(urls, start=1))
    return "S. No.,Product Name,Input Image Urls\n" + rows


STREAMS = 40  # browsers watching one job
WINDOW = 2.0  # seconds the reads are counted


async def test_events_show_the_job_moving_then_done(
    service: Service, image_host: ImageHost
) -> None:
    _, answer = await service.upload(await slow_csv(image_host, 6))
    assert answer["events_url"] == f"{service.url}/api/events/{answer['request_id']}"
    stream = await read_events(service, answer["request_id"])

    names = [name for name, _ in stream]
    assert names[-1] == "done"
    assert set(names[:-1]) == {"progress"}, "one done, at the end"
    seen = [data["progress"]["processed_images"] for _, data in stream[:-1]]
    assert seen == sorted(seen), "progress never goes backwards"
    assert len(set(seen)) >= 3, f"intermediate progress was shown: {seen}"
    done = stream[-1][1]
    assert done["status"] == "completed"
    assert done["progress"]["percentage"] == 100.0
    assert done["download_url"].endswith(f"/api/download/{answer['request_id']}")
    assert done["archive_url"] == answer["archive_url"]
    assert answer["archive_url"] == f"{service.url}/api/archive/{answer['request_id']}"


async def test_events_of_a_finished_job_end_at_once(
    service: Service, image_host: ImageHost
) -> None:
    _, answer = await service.upload(await slow_csv(image_host, 1))
    await service.wait(answer["request_id"])
    stream = await read_events(service, answer["request_id"])
    assert [name for name, _ in stream] == ["progress", "done"]


async def test_the_stream_is_plain_event_stream_lines(
    service: Service, image_host: ImageHost
) -> None:
    _, answer = await service.upload(await slow_csv(image_host, 1))
    await service.wait(answer["request_id"])
    async with service.client.get(answer["events_url"]) as response:
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Accel-Buffering"] == "no", "proxies must not buffer it"
        body = (await response.read()).decode()
    assert body.startswith("retry: 2000\n\nevent: progress\ndata: {")
    assert body.count("event: done\ndata: {") == 1
    assert body.endswith("}\n\n")
    assert "\r" not in body, "lines end in LF, as they always have"


async def test_streams_on_two_jobs_at_once_each_see_their_own_job(
    service: Service, image_host: ImageHost
) -> None:
    answers = [(await service.upload(await slow_csv(image_host, 3)))[1] for _ in range(2)]
    streams = await asyncio.gather(
        *(read_events(service, answer["request_id"]) for answer in answers for _ in range(3))
    )
    for n, stream in enumerate(streams):
        assert {data["request_id"] for _, data in stream} == {answers[n // 3]["request_id"]}
        assert stream[-1][0] == "done"


async def test_head_of_a_running_job_s_events_does_not_hold_the_connection(
    service: Service, image_host: ImageHost
) -> None:
    url, release = image_host.held("/held.jpg", jpeg_bytes(50, 50))
    _, answer = await service.upload(f"S. No.,Product Name,Input Image Urls\n1,A,{url}\n")
    host, port = service.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        # On one connection: the HEAD answer must end (no stream left open behind it)
        # for the request after it to be answered.
        path = answer["events_url"].removeprefix(service.url)
        writer.write(f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        writer.write(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert b"text/event-stream" in head
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    finally:
        writer.close()
        release.set()


def traced_statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement the service sends from now on, on SQLite or PostgreSQL, with
    its arguments."""
    statements: list[str] = []
    connect: Callable[..., sqlite3.Connection] = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = connect(*args, **kwargs)
        connection.set_trace_callback(statements.append)
        return connection

    execute = psycopg.AsyncCursor.execute

    async def traced_execute(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        statements.append(f"{query} {params!r}")
        return await execute(self, query, params, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", traced)
    monkeypatch.setattr(psycopg.AsyncCursor, "execute", traced_execute)
    return statements


async def test_many_streams_on_one_job_cost_one_read_of_it_per_interval_in_each_process(
    tmp_path: Path, image_host: ImageHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements = traced_statements(monkeypatch)
    url, release = image_host.held("/held.jpg", jpeg_bytes(50, 50))
    # On PostgreSQL two services share the job, half the streams on each, as two processes
    # would (each has its own watchers); SQLite has one.
    processes = 2 if settings_for(tmp_path).database_url else 1
    async with contextlib.AsyncExitStack() as stack:
        services = [
            await stack.enter_async_context(running_service(settings_for(tmp_path / f"d{n}")))
            for n in range(processes)
        ]
        _, answer = await services[0].upload(f"S. No.,Product Name,Input Image Urls\n1,A,{url}\n")
        job_id = answer["request_id"]

        def reads() -> int:
            # A read of the job row itself: its first FROM is the jobs table (statements on
            # its images name the job through a sub-select of that table).
            return sum(
                s.partition(" FROM ")[2].startswith("jobs WHERE id") and job_id in s
                for s in statements
            )

        async def watch(service: Service) -> list[bytes]:
            async with service.client.get(f"{service.url}/api/events/{job_id}") as response:
                return [line async for line in response.content if line.startswith(b"event:")]

        # Counted from before the streams open: all arriving at once cost no more reads.
        before = reads()
        streams = [asyncio.create_task(watch(services[n % processes])) for n in range(STREAMS)]
        await asyncio.sleep(WINDOW)
        during = reads() - before
        release.set()
        async with asyncio.timeout(30):
            events = await asyncio.gather(*streams)
    assert all(seen[-1] == b"event: done\n" for seen in events)
    # Each process reads the job once per half second for all its streams, their arrival
    # included, where each stream used to make its own reads and one more as it opened.
    per_process = WINDOW / 0.5
    assert processes * per_process / 2 <= during <= processes * (per_process + 2), during


async def test_a_stream_opened_as_its_job_is_retried_follows_the_new_run(
    service: Service,
) -> None:
    async with gated_host(open_gate=True) as host:
        late = "/missing/late.jpg"
        _, answer = await service.upload(
            f"S. No.,Product Name,Input Image Urls\n1,A,{host.url(late)}\n"
        )
        job_id = answer["request_id"]
        ended = await read_events(service, job_id)  # watched to its end
        assert ended[-1][1]["progress"]["failed_images"] == 1
        host.found.add(late)
        host.gate.clear()  # the retried image stays in flight
        status, _ = await service.post(f"/api/retry/{job_id}")
        assert status == 202
        # Opened at once, while the ended job's last read may still be at hand.
        stream = asyncio.create_task(read_events(service, job_id))
        await host.until_waiting(1)
        assert not stream.done(), "the new stream ended with the run before the retry"
        host.gate.set()
        events = await stream
    assert events[-1][0] == "done"
    assert events[-1][1]["progress"]["succeeded_images"] == 1


async def test_events_of_an_unknown_id_is_404(service: Service) -> None:
    status, body = await service.get("/api/events/nope")
    assert (status, body["code"]) == (404, "not_found")


async def test_archive_holds_the_results_and_every_image(
    service: Service, image_host: ImageHost
) -> None:
    one = image_host.add("/a.jpg", jpeg_bytes(320, 240))
    two, release = image_host.held("/b.jpg", jpeg_bytes(200, 100, (10, 90, 200)))
    gone = image_host.url("/gone.jpg")
    csv_text = (
        f'S. No.,Product Name,Input Image Urls\n1,Lamp,"{one},{gone}"\n2,Desk,"{two},{one}"\n'
    )
    _, answer = await service.upload(csv_text)
    request_id = answer["request_id"]
    status, body = await service.get(f"/api/archive/{request_id}")
    assert (status, body["code"]) == (409, "not_finished")  # never a half-made zip
    release.set()
    await service.wait(request_id)

    async with service.client.get(f"{service.url}/api/archive/{request_id}") as response:
        assert response.status == 200
        assert response.content_type == "application/zip"
        assert f"imgsvc-{request_id}.zip" in response.headers["Content-Disposition"]
        data = await response.read()
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    names = archive.namelist()
    assert names[0] == f"results-{request_id}.csv"
    _, csv_body = await service.get(f"/api/download/{request_id}")
    downloaded = list(csv.reader(io.StringIO(csv_body.decode())))
    zipped = list(csv.reader(io.StringIO(archive.read(names[0]).decode())))
    # The same CSV, with where each image is in the zip; the shared URL is one file.
    files = ["Files", "images/1_1.jpg,", "images/2_1.jpg,images/1_1.jpg"]
    assert zipped == [[*row, cell] for row, cell in zip(downloaded, files, strict=True)]
    assert names[1:] == ["images/1_1.jpg", "images/2_1.jpg"]

    outputs = [url for row in downloaded[1:] for url in row[3].split(",") if url]
    for member, url in zip(
        ["images/1_1.jpg", "images/2_1.jpg", "images/1_1.jpg"], outputs, strict=True
    ):
        async with service.client.get(url) as response:
            assert archive.read(member) == await response.read()
    assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}


async def test_archive_of_an_unknown_id_is_404(service: Service) -> None:
    status, body = await service.get("/api/archive/nope")
    assert (status, body["code"]) == (404, "not_found")


def metric(text: str, name: str, absent: float | None = None) -> float:
    """The sample's value; `absent` if the text has no such sample (else the test fails)."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    if match is None:
        assert absent is not None, f"no {name} in the metrics"
        return absent
    return float(match.group(1))


async def test_metrics_count_images_bytes_and_jobs(service: Service, image_host: ImageHost) -> None:
    _, before = await service.get("/metrics")
    ok = image_host.add("/m.jpg", jpeg_bytes(400, 300))
    missing = image_host.url("/missing.jpg")
    _, answer = await service.upload(
        f'S. No.,Product Name,Input Image Urls\n1,X,"{ok},{missing}"\n'
    )
    await service.wait(answer["request_id"])
    async with service.client.get(f"{service.url}/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        after = await response.text()
    old = before.decode()

    def grew(name: str) -> float:
        return metric(after, name) - metric(old, name, absent=0.0)

    assert grew('imgsvc_images_total{code="",status="succeeded"}') == 1
    assert grew('imgsvc_images_total{code="http_error",status="failed"}') == 1
    assert grew("imgsvc_bytes_in_total") == len(jpeg_bytes(400, 300))
    assert 0 < grew("imgsvc_bytes_out_total") < len(jpeg_bytes(400, 300))
    assert grew("imgsvc_fetch_seconds_count") == 2
    assert grew("imgsvc_compress_seconds_count") == 1
    assert metric(after, 'imgsvc_jobs{state="completed"}') == 1
    assert metric(after, "imgsvc_queue_depth") == 0
    assert "# TYPE imgsvc_webhook_attempts_total counter" in after.splitlines()


async def test_promtool_accepts_the_metrics_of_a_live_service(
    service: Service, image_host: ImageHost, receiver: Receiver
) -> None:
    """Prometheus's own checker (Debian's `prometheus`, scripts/test-deps.sh) reads what a
    scrape gets once every kind of series has samples: images ended both ways, a webhook."""
    ok = image_host.add("/p.jpg", jpeg_bytes(300, 200))
    missing = image_host.url("/missing.jpg")
    _, answer = await service.upload(
        f'S. No.,Product Name,Input Image Urls\n1,X,"{ok},{missing}"\n',
        webhook_url=receiver.url(),
    )
    await service.wait(answer["request_id"])
    await receiver.wait_calls(1)
    # The attempt is counted once it is recorded, a moment after the receiver answered.
    async with asyncio.timeout(10):
        while b"imgsvc_webhook_attempts_total{" not in (
            scraped := (await service.get("/metrics"))[1]
        ):
            await asyncio.sleep(0.05)
    checker = await asyncio.create_subprocess_exec(
        "promtool", "check", "metrics", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    said, _ = await checker.communicate(scraped)
    assert (checker.returncode, said.decode()) == (0, "")


async def test_request_id_is_echoed_or_made(service: Service) -> None:
    async with service.client.get(
        f"{service.url}/livez", headers={"X-Request-ID": "trace-42"}
    ) as response:
        assert response.headers["X-Request-ID"] == "trace-42"
    async with service.client.get(
        f"{service.url}/api/status/nope", headers={"X-Request-ID": "bad id\twith spaces"}
    ) as response:
        made = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)


async def test_polls_are_logged_at_debug_and_changes_and_errors_at_info(
    service: Service, image_host: ImageHost, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="imgsvc.http")
    url = image_host.add("/a.jpg", jpeg_bytes(40, 30))
    _, answer = await service.upload(f"S. No.,Product Name,Input Image Urls\n1,A,{url}\n")
    job_id = answer["request_id"]
    await service.wait(job_id)
    await read_events(service, job_id)
    await service.get("/api/status/nope")
    expected = {
        "POST /api/upload 202": logging.INFO,
        f"GET /api/status/{job_id} 200": logging.DEBUG,
        f"GET /api/events/{job_id} 200": logging.DEBUG,
        "GET /api/status/nope 404": logging.INFO,
    }
    async with asyncio.timeout(5):  # each line is written once its answer has been sent
        while not expected.keys() <= {r.getMessage() for r in caplog.records}:
            await asyncio.sleep(0.01)
    levels = {r.getMessage(): r.levelno for r in caplog.records if r.name == "imgsvc.http"}
    assert {line: levels[line] for line in expected} == expected


def test_json_log_lines_carry_the_request_and_job_ids() -> None:
    record = logging.LogRecord("imgsvc.jobs", logging.INFO, __file__, 1, "job %s ended", ("j1",),
                               None)  # fmt: skip
    record.status = 200
    request_token, job_token = logs.REQUEST_ID.set("r1"), logs.JOB_ID.set("j1")
    try:
        line = logs.JsonFormatter().format(record)
    finally:
        logs.REQUEST_ID.reset(request_token)
        logs.JOB_ID.reset(job_token)
    body = json.loads(line)
    assert "\n" not in line
    assert body["message"] == "job j1 ended"
    assert (body["request_id"], body["job_id"], body["status"]) == ("r1", "j1", 200)
    assert body["level"] == "info"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["time"])


async def test_docs_are_served_without_a_cdn(service: Service) -> None:
    status, page = await service.get("/docs")
    assert status == 200
    html = page.decode()
    assert "//" not in html, "every asset comes from this service"
    for asset in re.findall(r'(?:src|href)="([^"]+)"', html):
        status, body = await service.get(asset)
        assert status == 200, asset
        assert len(body) > 100, asset
    status, document = await service.get("/openapi.json")
    assert status == 200
    assert document["openapi"].startswith("3.")
    assert "/api/events/{request_id}" in document["paths"]
