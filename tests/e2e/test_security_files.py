"""Hostile files through the running service: uploads, the results CSV, /api/image paths."""

from __future__ import annotations

import csv
import io
import urllib.parse
from pathlib import Path

import pytest

from ..conftest import ImageHost, Service, jpeg_bytes, running_service, settings_for
from ..security_support import raw_http, status_of

pytestmark = pytest.mark.anyio

HEADER = b"S. No.,Product Name,Input Image Urls\n"
URL = b"http://img.example/a.jpg"
ROW = b"1,Chair," + URL + b"\n"
PNG_FILE = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x02"

BAD_FILES = {
    "invalid UTF-8": (HEADER + b"1,Caf\xe9," + URL + b"\n", "line 2 is not valid UTF-8"),
    "UTF-16": ((HEADER + ROW).decode().encode("utf-16"), "the file is UTF-16, not UTF-8"),
    "NUL byte": (HEADER + b"1,Ch\x00air," + URL + b"\n", "line 2 contains a NUL byte"),
    "10 MB field": (
        HEADER + b"1," + b"x" * 10_000_000 + b"," + URL + b"\n",
        "a field on line 2 is larger than 1 MiB (IMGSVC_MAX_FIELD_BYTES)",
    ),
    "100,001 rows": (
        HEADER + b"".join(b"%d,P," % n + URL + b"\n" for n in range(100_001)),
        "more than 100,000 product rows",
    ),
    "a PNG": (PNG_FILE, "the file looks binary, not CSV"),
    "a zip (xlsx)": (b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00", "looks binary"),
    "JSON": (b'{"products": []}', 'lacks the required column(s) "S. No."'),
    "empty": (b"", "empty"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
async def test_bad_files_are_a_400_naming_the_problem(service: Service, name: str) -> None:
    data, expected = BAD_FILES[name]
    async with service.client.post(
        f"{service.url}/api/upload", data=io.BytesIO(data), headers={"Content-Type": "text/csv"}
    ) as response:
        status, body = response.status, await response.json()
    assert status == 400
    assert body["code"] == "invalid_csv"
    assert expected in body["detail"], body["detail"]
    assert (await service.get("/api/jobs"))[1]["total"] == 0


@pytest.mark.parametrize("content_type", ["text/csv", "multipart/form-data; boundary=xyz"])
async def test_an_oversized_upload_is_refused_before_its_body_is_sent(
    service: Service, content_type: str
) -> None:
    declared = service.settings.max_upload_bytes + 1  # the default: 50 MiB
    request = (
        f"POST /api/upload HTTP/1.1\r\nHost: imgsvc\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    answer = await raw_http(service, request)  # not one byte of the body is sent
    assert status_of(answer) == 413
    assert b'"code":"too_large"' in answer.replace(b" ", b"")
    assert b"52,428,800 bytes (IMGSVC_MAX_UPLOAD_BYTES)" in answer


FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+1", "-2+3", "@SUM(A1)",
            "\tTabbed", "\rReturn", "=cmd|' /C calc'!A0"]  # fmt: skip


async def test_results_csv_cells_cannot_run_as_formulas(
    service: Service, image_host: ImageHost
) -> None:
    url = image_host.add("/f.jpg", jpeg_bytes(20, 20))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["S. No.", "Product Name", "Input Image Urls", "=Note"])
    for n, text in enumerate(FORMULAS, start=1):
        writer.writerow([f"-{n}", text, url, text])
    _, answer = await service.upload(out.getvalue())
    await service.wait(answer["request_id"])
    _, body = await service.get(f"/api/download/{answer['request_id']}")
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert rows[0] == ["S. No.", "Product Name", "Input Image Urls", "'=Note", "Output Image Urls"]
    for n, (row, text) in enumerate(zip(rows[1:], FORMULAS, strict=True), start=1):
        assert row[:4] == [f"'-{n}", "'" + text, url, "'" + text]
        assert row[4].startswith("http")


def traversal_paths(name: str, data_dir: Path) -> list[str]:
    """Request targets that try to reach outside the image folder, sent byte for byte."""
    database = str(data_dir / "imgsvc.db")
    return [
        "/api/image/../imgsvc.db",
        "/api/image/../../imgsvc.db",
        "/api/image/..%2Fimgsvc.db",
        "/api/image/..%2F..%2Fimgsvc.db",
        "/api/image/%2e%2e%2fimgsvc.db",
        "/api/image/%2E%2E/imgsvc.db",
        "/api/image/..%252Fimgsvc.db",
        "/api/image/..%5Cimgsvc.db",
        "/api/image/..\\imgsvc.db",
        "/api/image/%2Fetc%2Fpasswd",
        "/api/image//etc/passwd",
        "/api/image/" + urllib.parse.quote(database, safe=""),
        "/api/image/" + database,
        f"/api/image/{name[0]}%2F{name}",  # the real file, by its sharded path
        f"/api/image/{name[0]}/{name}",
        f"/api/image/{name}%00.png",
        f"/api/image/{name}%00",
        "/api/image/%00",
        f"/api/image/{name}/.",
        f"/api/image/./{name}/../../imgsvc.db",
        "/api/image/..",
        "/api/image/.",
        "/api/image/imgsvc.db",
        "/api/image/~/.ssh/id_rsa",
    ]


async def test_api_image_serves_nothing_outside_the_image_folder(
    tmp_path: Path, image_host: ImageHost
) -> None:
    data_dir = tmp_path / "data"
    (tmp_path / "secret.jpg").write_bytes(b"\xff\xd8\xff secret outside the data folder")
    async with running_service(settings_for(data_dir)) as service:
        url = image_host.add("/t.jpg", jpeg_bytes(30, 30))
        _, answer = await service.upload(f"S. No.,Product Name,Input Image Urls\n1,A,{url}\n")
        await service.wait(answer["request_id"])
        _, details = await service.get(f"/api/details/{answer['request_id']}")
        name = details["products"][0]["images"][0]["output_url"].rsplit("/", 1)[1]
        legit = await raw_http(
            service, f"GET /api/image/{name} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        assert status_of(legit) == 200  # the endpoint works: the refusals below mean something
        paths = [*traversal_paths(name, data_dir), "/api/image/../../secret.jpg"]
        for path in paths:
            for method in ("GET", "HEAD"):
                request = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                answer_bytes = await raw_http(service, request.encode())
                assert status_of(answer_bytes) in (400, 404), (method, path, answer_bytes[:200])
                for secret in (b"SQLite format 3", b"root:", b"secret outside", b"\xff\xd8\xff"):
                    assert secret not in answer_bytes, (path, secret)
