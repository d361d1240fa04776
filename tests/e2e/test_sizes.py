"""Several sizes per image through the live service: the outputs, the results CSV's columns,
the details, the zip, and the refusals of sizes that cannot be made."""

from __future__ import annotations

import csv
import io
import zipfile

import pytest
from PIL import Image

from ..conftest import ImageHost, Service, jpeg_bytes

pytestmark = pytest.mark.anyio

HEADER = "S. No.,Product Name,Input Image Urls\n"
ROTATED = 6  # EXIF orientation: the stored picture is turned 90 degrees to be upright


def turned_jpeg(width: int, height: int) -> bytes:
    """A JPEG stored `width` x `height` that shows upright as `height` x `width`."""
    exif = Image.Exif()
    exif[0x0112] = ROTATED
    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg_bytes(width, height))).save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def png_bytes(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (width, height), (20, 120, 200, 128)).save(out, "PNG")
    return out.getvalue()


async def finished(service: Service, csv_text: str, **fields: str) -> str:
    status, answer = await service.upload(csv_text, **fields)
    assert status == 202, answer
    assert (await service.wait(answer["request_id"]))["status"] == "completed"
    return str(answer["request_id"])


async def fetched(service: Service, url: str) -> bytes:
    async with service.client.get(url) as response:
        assert response.status == 200
        return await response.read()


async def test_each_size_is_made_exactly_never_enlarged_and_listed_in_order(
    service: Service, image_host: ImageHost
) -> None:
    wide = image_host.add("/wide.jpg", jpeg_bytes(1200, 900))
    turned = image_host.add("/turned.jpg", turned_jpeg(900, 600))  # upright 600 x 900
    small = image_host.add("/small.png", png_bytes(400, 200), "image/png")
    gone = image_host.url("/gone.jpg")
    text = f'{HEADER}1,Lamp,"{wide},{gone}"\n2,Desk,"{turned},{small}"\n'
    job_id = await finished(service, text, sizes="300, 1600,800")

    _, details = await service.get(f"/api/details/{job_id}")
    assert details["options"]["sizes"] == [300, 1600, 800]
    lamp, desk = details["products"]
    expected = {  # per input, (width, height) at 300, 1600 and 800
        wide: [(300, 225), (1200, 900), (800, 600)],
        turned: [(200, 300), (600, 900), (533, 800)],
        small: [(300, 150), (400, 200), (400, 200)],
    }
    images = [*lamp["images"], *desk["images"]]
    for image in images:
        if image["input_url"] == gone:
            assert (image["status"], image["renditions"]) == ("failed", [])
            continue
        renditions = image["renditions"]
        assert [r["size"] for r in renditions] == [300, 1600, 800]
        assert [(r["width"], r["height"]) for r in renditions] == expected[image["input_url"]]
        for rendition in renditions:
            body = await fetched(service, rendition["output_url"])
            assert len(body) == rendition["bytes_out"]
            decoded = Image.open(io.BytesIO(body))
            assert (decoded.format, decoded.size) == (
                "JPEG",
                (rendition["width"], rendition["height"]),
            )
        main = Image.open(io.BytesIO(await fetched(service, image["output_url"])))
        assert main.size == expected[image["input_url"]][1]  # the main output as without sizes

    _, results = await service.get(f"/api/download/{job_id}")
    rows = list(csv.reader(io.StringIO(results.decode())))
    assert rows[0] == [
        "S. No.", "Product Name", "Input Image Urls", "Output Image Urls",
        "Output Image Urls 300", "Output Image Urls 1600", "Output Image Urls 800",
    ]  # fmt: skip
    for row, product in zip(rows[1:], details["products"], strict=True):
        assert row[3].split(",") == [i["output_url"] or "" for i in product["images"]]
        for column, size in enumerate([300, 1600, 800], start=4):
            assert row[column].split(",") == [
                next((r["output_url"] for r in i["renditions"] if r["size"] == size), "")
                for i in product["images"]
            ]
    assert rows[1][4].endswith(",")  # the missing image leaves its place empty


async def test_without_sizes_there_are_no_renditions(
    service: Service, image_host: ImageHost
) -> None:
    url = image_host.add("/a.jpg", jpeg_bytes(300, 200))
    job_id = await finished(service, f"{HEADER}1,A,{url}\n")
    _, details = await service.get(f"/api/details/{job_id}")
    assert details["options"]["sizes"] == []
    assert details["products"][0]["images"][0]["renditions"] == []
    _, results = await service.get(f"/api/download/{job_id}")
    assert next(csv.reader(io.StringIO(results.decode())))[-1] == "Output Image Urls"


async def test_the_zip_names_files_by_product_and_lists_them(
    service: Service, image_host: ImageHost
) -> None:
    shared = image_host.add("/shared.jpg", jpeg_bytes(500, 400))
    other = image_host.add("/other.jpg", jpeg_bytes(300, 600))
    gone = image_host.url("/gone.jpg")
    text = f'{HEADER}7,A,"{shared},{gone}"\n7,B,{other}\n../x y,C,"{other},{shared}"\n'
    job_id = await finished(service, text, sizes="100")

    _, data = await service.get(f"/api/archive/{job_id}")
    archive = zipfile.ZipFile(io.BytesIO(data))
    names = archive.namelist()
    assert names == [
        f"results-{job_id}.csv",
        "images/7_1.jpg", "images/7_1_100.jpg",  # the second URL of 7 failed: no file
        "images/7-2_1.jpg", "images/7-2_1_100.jpg",  # 7 again
        # ../x y: both its images are already in the zip, under their first names
    ]  # fmt: skip
    rows = list(csv.reader(io.StringIO(archive.read(names[0]).decode())))
    assert rows[0][3:] == ["Output Image Urls", "Output Image Urls 100", "Files", "Files 100"]
    assert [row[5:] for row in rows[1:]] == [
        ["images/7_1.jpg,", "images/7_1_100.jpg,"],
        ["images/7-2_1.jpg", "images/7-2_1_100.jpg"],
        ["images/7-2_1.jpg,images/7_1.jpg", "images/7-2_1_100.jpg,images/7_1_100.jpg"],
    ]
    for row in rows[1:]:  # each listed file holds the image its URL column names
        for urls, files in ((row[3], row[5]), (row[4], row[6])):
            for url, member in zip(urls.split(","), files.split(","), strict=True):
                assert bool(url) == bool(member)
                if url:
                    assert archive.read(member) == await fetched(service, url)


async def test_a_serial_number_is_made_safe_and_unique_in_file_names(
    service: Service, image_host: ImageHost
) -> None:
    urls = [image_host.add(f"/{n}.jpg", jpeg_bytes(60, 40 + n)) for n in range(4)]
    text = f"{HEADER}../x y,A,{urls[0]}\n.x-y,B,{urls[1]}\nÉté_1,C,{urls[2]}\n-x-y,D,{urls[3]}\n"
    job_id = await finished(service, text)
    _, data = await service.get(f"/api/archive/{job_id}")
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()[1:]
    assert names == [
        "images/-x-y_1.jpg", "images/x-y_1.jpg", "images/-t--1_1.jpg", "images/-x-y-2_1.jpg"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("sizes", "problem"),
    [
        ("big", "sizes: 'big' is not a whole number of pixels"),
        ("800,1.5", "sizes: '1.5' is not a whole number of pixels"),
        ("0", "sizes: 0 is not a size: a size is at least 1 pixel"),
        ("300,-20", "sizes: -20 is not a size: a size is at least 1 pixel"),
        ("20001", "sizes: 20001 is more than the limit of 20000 pixels"),
        ("10,20,30,40,50,60", "sizes: at most 5 sizes, not 6"),
        ("800,300,800", "sizes: 800 is given twice"),
        ("800,,300", "sizes: a size is missing between two commas"),
    ],
)
async def test_sizes_that_cannot_be_made_are_a_400_naming_the_problem(
    service: Service, sizes: str, problem: str
) -> None:
    text = f"{HEADER}1,A,http://127.0.0.1:9/a.jpg\n"
    status, body = await service.upload(text, sizes=sizes)
    assert (status, body["code"], body["detail"]) == (400, "invalid_field", problem)
    status, body = await service.post(
        "/api/upload", params={"sizes": sizes}, data=text, headers={"Content-Type": "text/csv"}
    )
    assert (status, body["detail"]) == (400, problem)
    assert (await service.get("/api/jobs"))[1]["total"] == 0


async def test_an_idempotency_key_tells_uploads_with_other_sizes_apart(
    service: Service, image_host: ImageHost
) -> None:
    text = f"{HEADER}1,A,{image_host.add('/a.jpg', jpeg_bytes(300, 200))}\n"
    keyed = service.with_headers({"Idempotency-Key": "sized"})
    status, first = await keyed.upload(text, sizes="200")
    assert status == 202
    assert (await keyed.upload(text, sizes="200")) == (200, first)
    status, other = await keyed.upload(text, sizes="100")
    assert (status, other["code"]) == (409, "idempotency_key_reused")
