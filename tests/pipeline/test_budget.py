"""Bytes in flight, as an operator sees them on /metrics: image bodies held from download to
compressed never weigh more than IMGSVC_FETCH_BYTES; and who gets room first."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from PIL import Image

from imgsvc.pipeline.budget import ByteBudget

from ..conftest import ImageHost, Service, running_service, settings_for

pytestmark = pytest.mark.anyio


def noisy_jpeg(size: int) -> bytes:
    """A JPEG that barely compresses: heavy to hold, slow to decode."""
    out = io.BytesIO()
    Image.effect_noise((size, size), 64).convert("RGB").save(out, "JPEG", quality=95)
    return out.getvalue()


async def bytes_in_flight(service: Service) -> float:
    _, text = await service.get("/metrics")
    line = next(x for x in text.decode().splitlines() if x.startswith("imgsvc_fetch_bytes_in"))
    return float(line.split()[1])


async def test_bodies_held_never_weigh_more_than_the_bound(
    tmp_path: Path, image_host: ImageHost
) -> None:
    body = noisy_jpeg(700)
    bound = 4 * len(body)
    urls = [image_host.add(f"/noise/{n}.jpg", body) for n in range(30)]
    csv_text = "S. No.,Product Name,Input Image Urls\n" + "".join(
        f"{n},SKU{n},{url}\n" for n, url in enumerate(urls, start=1)
    )
    # One Pillow thread and a fast host: bodies pile up waiting to be compressed, as many
    # as the bound lets in.
    settings = settings_for(
        tmp_path, cpu_workers=1, max_image_bytes=len(body) + 1000, fetch_bytes=bound
    )
    seen: list[float] = []
    async with running_service(settings) as service:
        _, answer = await service.upload(csv_text)
        waiting = asyncio.create_task(service.wait(answer["request_id"]))
        while not waiting.done():
            seen.append(await bytes_in_flight(service))
        final = await waiting
    assert final["progress"]["succeeded_images"] == 30
    assert max(seen) <= bound
    assert max(seen) >= 3 * len(body)  # the bound, not something else, held them back
    assert seen[-1] == 0


async def test_a_body_on_its_way_gets_room_before_requests_not_yet_sent() -> None:
    budget = ByteBudget(10, 10)
    compressing, answered, unsent = budget.hold(), budget.hold(), budget.hold()
    await compressing.fit(5)
    await answered.fit(5)  # what its request reserved; the full budget holds the next one
    sending = asyncio.create_task(unsent.fit(5))
    await asyncio.sleep(0)
    # The host announces one byte more than was reserved: what the body gives back to
    # grow is not taken by the request waiting before it.
    growing = asyncio.create_task(answered.fit(6, answered=True))
    await asyncio.sleep(0)
    assert (sending.done(), growing.done()) == (False, False)
    compressing.release()
    await growing
    assert (budget.used, sending.done()) == (6, False)
    answered.release()
    await sending
    assert budget.used == 5


async def test_a_waiter_cancelled_as_room_frees_takes_none_of_it() -> None:
    budget = ByteBudget(10, 10)
    holding, dropped, next_one = budget.hold(), budget.hold(), budget.hold()
    await holding.fit(10)
    waiting = asyncio.create_task(dropped.fit(4))
    await asyncio.sleep(0)
    # A slice stopped: its image waiting for room is cancelled, and in the same step an
    # image of another slice is compressed and gives its bytes back.
    waiting.cancel()
    holding.release()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert budget.used == 0
    await next_one.fit(10)
    assert budget.used == 10
