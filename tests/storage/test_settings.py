"""IMGSVC_STORAGE_URL and IMGSVC_S3_ENDPOINT: the forms taken, the clear refusals."""

from __future__ import annotations

import pytest

from imgsvc.config import Settings, SettingsError
from imgsvc.storage import open_storage
from imgsvc.storage.local import LocalStorage
from imgsvc.storage.s3 import S3Storage


@pytest.mark.parametrize(
    "url", ["s3://shop-images", "s3://shop-images/", "s3://shop.images/a/b-c/2024_x/"]
)
def test_a_bucket_url_selects_the_bucket(url: str) -> None:
    settings = Settings.from_env({"IMGSVC_STORAGE_URL": url})
    assert settings.storage_url == url
    assert isinstance(open_storage(settings), S3Storage)


def test_without_a_url_outputs_stay_in_the_data_folder() -> None:
    assert isinstance(open_storage(Settings.from_env({})), LocalStorage)


@pytest.mark.parametrize(
    "url",
    [
        "shop-images",
        "s3:/shop-images",
        "S3://shop-images",
        "gs://shop-images",
        "s3://",
        "s3://ab",
        "s3://Shop-Images",
        "s3://shop_images",
        "s3://-shop",
        "s3://shop-images/a//b",
        "s3://shop-images/../other",
        "s3://shop-images/./a",
    ],
)
def test_other_urls_are_refused_saying_what_is_expected(url: str) -> None:
    with pytest.raises(SettingsError, match=r"IMGSVC_STORAGE_URL=.* expected s3://bucket"):
        Settings.from_env({"IMGSVC_STORAGE_URL": url})


def test_an_endpoint_needs_a_bucket_and_an_http_url() -> None:
    endpoint = {"IMGSVC_STORAGE_URL": "s3://shop", "IMGSVC_S3_ENDPOINT": "http://127.0.0.1:9000"}
    assert Settings.from_env(endpoint).s3_endpoint == "http://127.0.0.1:9000"
    with pytest.raises(SettingsError, match="IMGSVC_S3_ENDPOINT is set but IMGSVC_STORAGE_URL"):
        Settings.from_env({"IMGSVC_S3_ENDPOINT": "http://127.0.0.1:9000"})
    for bad in ("127.0.0.1:9000", "ftp://store", "https://", "https://key:secret@store"):
        with pytest.raises(SettingsError, match="must be an http:// or https:// URL") as caught:
            Settings.from_env(endpoint | {"IMGSVC_S3_ENDPOINT": bad})
        assert "secret" not in str(caught.value)
