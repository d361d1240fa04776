"""The `imgsvc` command against a live service, run as a user runs it: a separate process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from ..conftest import ImageHost, Service, free_port, jpeg_bytes

pytestmark = pytest.mark.anyio


async def imgsvc(*args: str) -> tuple[int, str, str]:
    """Run the command to its end; its exit status, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "imgsvc", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(90):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def write_csv(tmp_path: Path, *urls: str) -> Path:
    path = tmp_path / "products.csv"
    rows = "".join(f"{n},SKU{n},{url}\n" for n, url in enumerate(urls, start=1))
    path.write_text("S. No.,Product Name,Input Image Urls\n" + rows)
    return path


async def test_submit_watch_follows_the_job_and_prints_the_results(
    service: Service, image_host: ImageHost, tmp_path: Path
) -> None:
    urls = [image_host.add(f"/{n}.jpg", jpeg_bytes(300, 200)) for n in range(3)]
    csv_path = write_csv(tmp_path, *urls)
    code, out, err = await imgsvc("submit", str(csv_path), "--watch", "--server", service.url)
    assert code == 0, err
    assert "accepted 3 products, 3 images" in err
    bars = [line for line in err.splitlines() if line.startswith("[")]
    assert bars[-1].startswith("[" + "#" * 30 + "] 100.0%  3/3 images  completed")
    lines = out.splitlines()
    assert lines[0] == "completed: 3 of 3 images produced"
    download = lines[1].removeprefix("results CSV: ")
    assert download.startswith(f"{service.url}/api/download/")
    async with service.client.get(download) as response:
        assert response.status == 200
        assert "Output Image Urls" in await response.text()
    assert lines[2].startswith(f"all images:  {service.url}/api/archive/")

    request_id = download.rsplit("/", 1)[1]
    code, out, _ = await imgsvc("status", request_id, "--server", service.url)
    assert code == 0
    assert json.loads(out)["status"] == "completed"
    # Watching a job that has already ended prints its outcome at once.
    code, watched, _ = await imgsvc("status", request_id, "--watch", "--server", service.url)
    assert code == 0
    assert watched.splitlines() == lines


async def test_submit_watch_exits_1_when_the_job_failed(
    service: Service, image_host: ImageHost, tmp_path: Path
) -> None:
    csv_path = write_csv(tmp_path, image_host.url("/missing.jpg"))
    code, out, err = await imgsvc("submit", str(csv_path), "--watch", "--server", service.url)
    assert code == 1
    assert out.strip() == "no image could be produced"
    assert "1 failed" in err


async def test_submit_sends_the_format_progressive_and_sizes(
    service: Service, image_host: ImageHost, tmp_path: Path
) -> None:
    csv_path = write_csv(tmp_path, image_host.add("/a.jpg", jpeg_bytes(300, 200)))
    for flags, expected in (
        (["--format", "avif"], {"format": "avif", "progressive": False}),
        (["--progressive", "--quality", "70"], {"format": "jpeg", "progressive": True}),
        (["--sizes", "800,150"], {"sizes": [800, 150]}),
    ):
        code, out, err = await imgsvc("submit", str(csv_path), *flags, "--server", service.url)
        assert code == 0, err
        request_id = json.loads(out)["request_id"]
        await service.wait(request_id)
        _, details = await service.get(f"/api/details/{request_id}")
        assert details["options"].items() >= expected.items()
    code, _, err = await imgsvc("submit", str(csv_path), "--format", "gif")
    assert code == 2
    assert "invalid choice: 'gif' (choose from 'jpeg', 'webp', 'avif')" in err


async def test_submit_no_reuse_makes_every_image_again(
    service: Service, image_host: ImageHost, tmp_path: Path
) -> None:
    csv_path = write_csv(tmp_path, image_host.add("/a.jpg", jpeg_bytes(300, 200)))
    reused = []
    for flags in ([], ["--no-reuse"], []):
        code, out, err = await imgsvc("submit", str(csv_path), *flags, "--server", service.url)
        assert code == 0, err
        status = await service.wait(json.loads(out)["request_id"])
        reused.append(status["progress"]["reused_images"])
    assert reused == [0, 0, 1]  # the same bytes again: reused unless asked not to


async def test_refusals_name_the_problem_and_exit_2(service: Service, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("S. No.,Product Name,Input Image Urls\n1,,ftp://x/a.jpg\n")
    code, out, err = await imgsvc("submit", str(path), "--server", service.url)
    assert (code, out) == (2, "")
    assert "  line 2, Product Name: the product name is empty" in err

    code, _, err = await imgsvc("status", "nope", "--server", service.url)
    assert (code, err.strip()) == (2, "imgsvc: the request id was not found")

    code, _, err = await imgsvc("submit", str(tmp_path / "absent.csv"), "--server", service.url)
    assert code == 2
    assert "absent.csv: no such file" in err


async def test_help_reads_well() -> None:
    code, out, _ = await imgsvc("--help")
    assert code == 0
    for word in ("serve", "submit", "status", "exit status", "--watch"):
        assert word in out
    code, out, _ = await imgsvc("serve", "--help")
    assert code == 0
    flags = ("--port", "--data-dir", "--public-url", "--allow-private-urls", "--log-format",
             "--log-level")  # fmt: skip
    for flag in flags:
        assert flag in out


async def test_serve_takes_its_flags_and_logs_json_lines(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGSVC_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "imgsvc", "serve", "--port", str(port), "--data-dir", str(data),
        "--public-url", "https://img.example.com/", "--log-level", "debug", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as client, asyncio.timeout(60):
            while True:
                try:
                    async with client.get(
                        f"http://127.0.0.1:{port}/readyz", headers={"X-Request-ID": "probe-1"}
                    ) as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            async with client.post(
                f"http://127.0.0.1:{port}/api/upload",
                data=b"x",
                headers={"Content-Type": "text/csv", "X-Request-ID": "upload-7"},
            ) as response:
                assert response.status == 400
            one_row = b"S. No.,Product Name,Input Image Urls\n1,Lamp,http://10.0.0.1/a.jpg\n"
            async with client.post(
                f"http://127.0.0.1:{port}/api/upload",
                data=one_row,
                headers={"Content-Type": "text/csv"},
            ) as response:
                assert response.status == 202
                answer = await response.json()
            # Links name the public URL, not the address the request came to.
            assert answer["status_url"] == (
                f"https://img.example.com/api/status/{answer['request_id']}"
            )
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, err = await process.communicate()
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells it.
    assert process.returncode in (0, -signal.SIGTERM)
    assert (data / "imgsvc.db").is_file()
    lines = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    assert len(lines) == len(err.decode().splitlines()), "every line is JSON"
    upload = [line for line in lines if line.get("request_id") == "upload-7"]
    assert (upload[-1]["path"], upload[-1]["status"]) == ("/api/upload", 400)
    # --log-level debug also shows the probes, which info leaves out.
    probe = [line for line in lines if line.get("request_id") == "probe-1"]
    assert (probe[-1]["level"], probe[-1]["path"]) == ("debug", "/readyz")


async def test_make_demo_runs_offline_to_the_results(tmp_path: Path) -> None:
    env = {**os.environ, "DEMO_PORT": str(free_port()), "DEMO_HOST_PORT": str(free_port())}
    root = Path(__file__).resolve().parents[2]
    process = await asyncio.create_subprocess_exec(
        "bash", "scripts/demo.sh", cwd=root, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(100):
        out, _ = await process.communicate()
    text = out.decode()
    assert process.returncode == 0, text
    assert "completed: 12 of 12 images produced" in text
    assert "S. No.,Product Name,Input Image Urls,Output Image Urls" in text
    assert text.count("/api/image/") == 12
