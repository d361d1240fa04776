"""How one process's throughput grows with cores, and where its event loop stops it.

The service runs the same job with IMGSVC_CPU_WORKERS=1 and then 2, in alternating
rounds (the median of each is shown). The event loop is one thread: whatever it spends per
image (downloads, database batches, status requests) caps one process at 1000 / that many
images per second, however many cores compress. Adding cores adds compressing threads
until the whole CPU per image, spread over the cores, falls to the loop's share: so the
loop saturates at about (CPU ms per image) / (loop CPU ms per image) cores.
"""

from __future__ import annotations

import statistics
from typing import Any

from benchkit import Bench, Row, Server, free_port, workload_images

WORKERS = (1, 2)


async def growth(bench: Bench) -> list[Row]:
    """Images/s at 1 and 2 CPU workers, the loop's CPU per image, the projected limit."""
    runs: dict[int, list[dict[str, Any]]] = {workers: [] for workers in WORKERS}
    for n in range(bench.args.rounds):
        for workers in WORKERS if n % 2 == 0 else reversed(WORKERS):
            env = {"IMGSVC_CPU_WORKERS": str(workers)}
            server = Server(bench.folder / f"w{workers}-{n}", free_port(), env)
            try:
                runs[workers].append(await workload_images(server, bench.host, bench.args.images))
            finally:
                server.stop()
    one, two = (
        {key: statistics.median(r[key] for r in runs[w]) for key in ("rate", "cpu", "loop_cpu")}
        for w in WORKERS
    )
    loop_limit = 1000 / two["loop_cpu"]
    cores = two["cpu"] / two["loop_cpu"]
    return [
        ("images/s with 1 / 2 CPU workers",
         f"{one['rate']:.1f} / {two['rate']:.1f} (x{two['rate'] / one['rate']:.2f})"),
        ("CPU ms per image with 2 workers (of it event loop)",
         f"{two['cpu']:.1f} ({two['loop_cpu']:.2f})"),
        ("event loop saturates at (loop-bound images/s)",
         f"~{cores:.0f} cores ({loop_limit:.0f} images/s)"),
    ]  # fmt: skip
