"""`make imagetest`: run the image `make image` built as a container and check it as an
operator would: it runs as its own user, /livez and its HEALTHCHECK answer, a job goes end
to end, SIGTERM drains and exits 0, and a restart on the same volume finishes the work.

podman runs the container with runc and the host's network: the image host this script
serves on 127.0.0.1 is reached from inside, and the service listens on 127.0.0.1 only.
On this machine crun cannot start containers (the cgroup layout mixes v1 and v2: "cgroups
in hybrid mode not supported"), and no runtime may raise a resource limit (no
CAP_SYS_RESOURCE), so the container asks for the limits podman itself runs with.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import socket
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sample_host import photo, products_csv  # beside this script, as bench.py does

USER_ID = 10001  # the Dockerfile's imgsvc user
PODMAN_NPROC = 32768  # podman lowers its own process limit to this before starting a runtime
SLOW_SECONDS = 3.0  # how long each image of the drain test takes to download
SLOW_IMAGES, IN_FLIGHT = 24, 4  # images in the drain test; downloads at once
GRACE = 10.0  # IMGSVC_SHUTDOWN_GRACE's default: in-flight images get this long on SIGTERM


def run(*args: str) -> str:
    """A podman command's output; its error output if it fails."""
    done = subprocess.run(args, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


async def podman(*args: str) -> str:
    # In a thread: the image host this script serves shares the event loop.
    return await asyncio.to_thread(run, "podman", *args)


async def until(holds: Callable[[], Awaitable[bool]], limit: float) -> None:
    """Poll until `holds` answers True; TimeoutError after `limit` seconds."""
    async with asyncio.timeout(limit):
        while True:
            if await holds():
                return
            await asyncio.sleep(0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def image_host(hits: Counter[str]) -> AsyncIterator[str]:
    """Photo-like JPEGs at /images/<n>.jpg, and the same slowly at /slow/<n>.jpg; `hits`
    counts the downloads of each path."""

    async def image(request: web.Request) -> web.Response:
        hits[request.path] += 1
        if request.path.startswith("/slow/"):
            await asyncio.sleep(SLOW_SECONDS)
        picture = photo(int(request.match_info["n"]) % 8, 800)
        return web.Response(body=picture, content_type="image/jpeg")

    app = web.Application()
    app.router.add_get(r"/{kind:images|slow}/{n:\d+}.jpg", image)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class Container:
    """The image running under podman, and an HTTP client for the service inside it."""

    def __init__(self, image: str, client: aiohttp.ClientSession) -> None:
        self.image = image
        self.client = client
        self.name = f"imgsvc-imagetest-{os.getpid()}"
        self.volume = f"{self.name}-data"  # a named volume, as the README's docker run has
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], PODMAN_NPROC)
        await podman(
            "run", "--detach", "--name", self.name, "--runtime", "runc", "--network", "host",
            "--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}",
            "--env", "IMGSVC_HOST=127.0.0.1", "--env", f"IMGSVC_PORT={self.port}",
            "--env", "IMGSVC_ALLOW_PRIVATE_URLS=1",
            "--env", f"IMGSVC_FETCH_CONCURRENCY={IN_FLIGHT}",
            "--volume", f"{self.volume}:/data", self.image,
        )  # fmt: skip
        await until(self.live, 60)

    async def live(self) -> bool:
        try:
            return (await self.get("/livez"))[0] == 200
        except aiohttp.ClientError:
            return False

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.client.get(self.url + path) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.read()

    async def upload(self, csv_text: str) -> tuple[int, Any]:
        form = aiohttp.FormData()
        form.add_field("file", csv_text.encode(), filename="products.csv", content_type="text/csv")
        async with self.client.post(self.url + "/api/upload", data=form) as response:
            return response.status, await response.json()

    async def status(self, request_id: str) -> dict[str, Any]:
        body: dict[str, Any] = (await self.get(f"/api/status/{request_id}"))[1]
        return body

    async def ended(self, request_id: str) -> dict[str, Any]:
        """The job's status once it has ended."""
        await until(lambda: self._has_ended(request_id), 120)
        return await self.status(request_id)

    async def _has_ended(self, request_id: str) -> bool:
        return (await self.status(request_id))["status"] in ("completed", "failed", "cancelled")

    async def data_dir(self) -> Path:
        """Where podman keeps the volume, as the host sees it."""
        return Path(await podman("volume", "inspect", "--format", "{{.Mountpoint}}", self.volume))

    async def remove(self) -> None:
        for command in (["rm", "--force", self.name], ["volume", "rm", "--force", self.volume]):
            with contextlib.suppress(RuntimeError):
                await podman(*command)


def owner_facts(pid: int, data: Path) -> tuple[set[int], str, str, set[int]]:
    """A process's uids, its pid in its own namespace, its command line, and the owners of
    the data folder's files."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    owners = {p.stat().st_uid for p in [data, data / "imgsvc.db", data / "images"]}
    return {int(u) for u in status["Uid"].split()}, status["NSpid"].split()[-1], command, owners


async def check_health(box: Container) -> None:
    assert (await box.get("/livez"))[0] == 200
    assert (await box.get("/readyz"))[0] == 200
    await podman("healthcheck", "run", box.name)  # the image's own HEALTHCHECK command
    print("ok  /livez, /readyz and the image's HEALTHCHECK answer")


async def check_job(box: Container, host: str) -> None:
    code, answer = await box.upload(products_csv(host, 3, 2))
    assert code == 202, answer
    final = await box.ended(answer["request_id"])
    assert final["status"] == "completed", final
    assert final["progress"]["succeeded_images"] == 6, final
    code, results = await box.get(f"/api/download/{answer['request_id']}")
    assert code == 200, results
    lines = results.decode().splitlines()
    assert lines[0].endswith("Output Image Urls"), lines
    assert len(lines) == 4, lines
    name = lines[1].rsplit("/api/image/", 1)[1].split(",")[0].rstrip('"')
    code, image = await box.get(f"/api/image/{name}")
    assert code == 200, image
    assert image.startswith(b"\xff\xd8\xff"), "an output image is a JPEG"
    assert len(image) < len(photo(0, 800)), "the output is smaller than the input"
    print(f"ok  a job end to end: 3 products, 6 images, the results CSV, {name} ({len(image):,} B)")


async def check_user(box: Container) -> None:
    pid = int(await podman("inspect", "--format", "{{.State.Pid}}", box.name))
    uids, pid_inside, command, owners = await asyncio.to_thread(
        owner_facts, pid, await box.data_dir()
    )
    assert uids == {USER_ID}, f"the service runs as uid {uids}, not {USER_ID}"
    assert pid_inside == "1", f"the service is PID {pid_inside} in its container, not 1"
    assert "imgsvc serve" in command, command
    assert owners == {USER_ID}, f"the data folder's files belong to {owners}"
    print(f"ok  runs as uid {USER_ID} (imgsvc) and PID 1 of its container: {command}")


async def check_drain(box: Container, host: str) -> str:
    """SIGTERM while a job runs: readiness and uploads 503, status answers, exit 0 soon."""
    urls = ",".join(f"{host}/slow/{n}.jpg" for n in range(SLOW_IMAGES))
    code, answer = await box.upload(f'S. No.,Product Name,Input Image Urls\n1,Slow,"{urls}"\n')
    assert code == 202, answer
    request_id: str = answer["request_id"]

    async def midway() -> bool:
        return bool((await box.status(request_id))["progress"]["processed_images"] >= IN_FLIGHT)

    async def unready() -> bool:
        return (await box.get("/readyz"))[0] == 503

    await until(midway, 60)
    signalled = time.monotonic()
    await podman("kill", "--signal", "TERM", box.name)  # what docker stop sends first
    await until(unready, 5)
    code, refused = await box.upload("S. No.,Product Name,Input Image Urls\n1,X,http://a.b/x.jpg\n")
    assert (code, refused["code"]) == (503, "shutting_down"), refused
    status = await box.status(request_id)
    assert status["status"] == "processing", status
    exit_code = int(await podman("wait", box.name))
    took = time.monotonic() - signalled
    assert exit_code == 0, f"exit status {exit_code} after SIGTERM"
    assert took < GRACE + SLOW_SECONDS, f"it took {took:.1f} s to stop"
    print(f"ok  SIGTERM: /readyz 503, uploads 503, status answers; exit 0 after {took:.1f} s")
    return request_id


async def check_restart(box: Container, request_id: str, hits: Counter[str]) -> None:
    await podman("start", box.name)
    await until(box.live, 60)
    final = await box.ended(request_id)
    assert final["status"] == "completed", final
    assert final["progress"]["succeeded_images"] == SLOW_IMAGES, final
    again = [path for path, count in hits.items() if count > 1]
    assert again == [], f"downloaded again after the restart: {again}"
    print(f"ok  restarted on the same volume: the job completed, {SLOW_IMAGES} images, none redone")


async def main(image: str) -> None:
    await podman("image", "exists", image)
    size = int(await podman("image", "inspect", "--format", "{{.Size}}", image))
    print(f"{image}: {size / 1e6:.0f} MB")
    hits: Counter[str] = Counter()
    async with image_host(hits) as host, aiohttp.ClientSession() as client:
        box = Container(image, client)
        try:
            await box.start()
            await check_health(box)
            await check_job(box, host)
            await check_user(box)
            request_id = await check_drain(box, host)
            await check_restart(box, request_id, hits)
        except BaseException:
            with contextlib.suppress(RuntimeError):
                print(await podman("logs", "--tail", "40", box.name))
            raise
        finally:
            await box.remove()
    print("the image passed every check")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=os.environ.get("IMAGE", "localhost/imgsvc:latest"))
    asyncio.run(main(parser.parse_args().image))
