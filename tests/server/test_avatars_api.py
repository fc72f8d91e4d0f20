"""Avatar list, upload and images over HTTP: what is accepted, and a clear JSON error for everything else."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import httpx2
import numpy as np
import pytest
from PIL import Image

from server.settings import ServerSettings
from streaming.lite.default_portrait import default_portrait_path
from tests.server.conftest import serving


def encoded(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    if image_format == "MPO":  # a phone camera's JPEG: the picture and a second one after it
        image.save(buffer, format="MPO", save_all=True, append_images=[image])
    else:
        image.save(buffer, format=image_format)
    return buffer.getvalue()


def portrait() -> Image.Image:
    return Image.open(default_portrait_path()).convert("RGB")


def faceless() -> Image.Image:
    """Smooth colour gradients: an image any decoder reads, with nothing a face detector could take for a face."""
    y, x = np.mgrid[0:256, 0:256]
    pixels = np.stack([x, y, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    return Image.fromarray(pixels)


async def upload(http: httpx2.AsyncClient, data: bytes, filename: str, content_type: str) -> httpx2.Response:
    return await http.post("/api/avatars", files={"image": (filename, data, content_type)})


async def test_the_bundled_avatar_is_listed_and_served(settings: ServerSettings) -> None:
    async with serving(settings) as http:
        listing = (await http.get("/api/avatars")).json()
        image = await http.get("/api/avatars/default/image")
    assert listing == {"avatars": [{"name": "default", "source": "bundled"}], "default": "default"}
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == default_portrait_path().read_bytes()


@pytest.mark.parametrize(
    ("image_format", "content_type"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("MPO", "image/jpeg")]
)
async def test_a_portrait_upload_is_kept_under_a_fresh_name(
    settings: ServerSettings, image_format: str, content_type: str
) -> None:
    data = encoded(portrait(), image_format)
    async with serving(settings) as http:
        first = await upload(http, data, "My Portrait.img", content_type)
        second = await upload(http, data, "My Portrait.img", content_type)
        listing = (await http.get("/api/avatars")).json()["avatars"]
        stored = await http.get("/api/avatars/my-portrait/image")
    assert first.status_code == 201, first.text
    assert first.json() == {"name": "my-portrait", "source": "uploaded"}
    assert second.json()["name"] == "my-portrait-2"
    assert [avatar["name"] for avatar in listing] == ["default", "my-portrait", "my-portrait-2"]
    assert Image.open(io.BytesIO(stored.content)).size == portrait().size
    assert (settings.avatar_dir / "my-portrait.png").is_file()


async def test_uploads_survive_a_restart(settings: ServerSettings) -> None:
    async with serving(settings) as http:
        assert (await upload(http, encoded(portrait(), "PNG"), "eileen.png", "image/png")).status_code == 201
    async with serving(replace(settings, avatar="eileen")) as http:
        listing = (await http.get("/api/avatars")).json()
    assert listing["default"] == "eileen"
    assert {"name": "eileen", "source": "uploaded"} in listing["avatars"]


@pytest.mark.parametrize(
    ("data", "filename", "status", "code"),
    [
        (b"hello, I am not an image", "note.png", 415, "unsupported_image"),
        (encoded(faceless(), "GIF"), "anim.gif", 415, "unsupported_image"),
        (encoded(faceless(), "PNG"), "gradient.png", 422, "no_face"),
        (encoded(faceless().resize((32, 32)), "PNG"), "tiny.png", 422, "bad_image_size"),
    ],
)
async def test_bad_uploads_are_refused_with_a_reason(
    settings: ServerSettings, data: bytes, filename: str, status: int, code: str
) -> None:
    async with serving(settings) as http:
        response = await upload(http, data, filename, "image/png")
        listing = (await http.get("/api/avatars")).json()["avatars"]
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert [avatar["name"] for avatar in listing] == ["default"], "nothing refused is kept"


async def test_an_oversized_upload_is_refused_before_and_after_it_is_read(settings: ServerSettings) -> None:
    data = encoded(portrait(), "PNG")
    async with serving(replace(settings, max_upload_bytes=4096)) as http:
        declared_too_large = await upload(http, data, "big.png", "image/png")
    async with serving(replace(settings, max_upload_bytes=len(data) - 1)) as http:
        read_too_large = await upload(http, data, "big.png", "image/png")
    for response in (declared_too_large, read_too_large):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "upload_too_large"


async def test_a_missing_file_field_and_unknown_avatars_are_client_errors(settings: ServerSettings) -> None:
    async with serving(settings) as http:
        no_file = await http.post("/api/avatars", data={"name": "x"})
        unknown_image = await http.get("/api/avatars/nobody/image")
        traversal = await http.get("/api/avatars/..%2F..%2Fetc%2Fpasswd/image")
        unknown_in_offer = await http.post("/api/sessions", json={"sdp": "v=0", "type": "offer", "avatar": "nobody"})
    assert no_file.status_code == 422 and no_file.json()["error"]["code"] == "invalid_request"
    assert unknown_image.status_code == 404 and unknown_image.json()["error"]["code"] == "unknown_avatar"
    assert traversal.status_code == 404
    assert unknown_in_offer.status_code == 400, "the offer itself is checked first"


def test_a_startup_avatar_must_exist_and_show_a_face(settings: ServerSettings, tmp_path: Path) -> None:
    from server.app import create_app
    from tests.server.fake_renderer import LoudnessRenderer

    faceless_file = tmp_path / "gradient.png"
    faceless().save(faceless_file)
    with pytest.raises(ValueError, match="no avatar 'nobody'"):
        create_app(replace(settings, avatar="nobody"), renderer=LoudnessRenderer())
    with pytest.raises(ValueError, match="no face"):
        create_app(replace(settings, avatar=str(faceless_file)), renderer=LoudnessRenderer())


async def test_a_portrait_path_given_at_startup_becomes_the_default(settings: ServerSettings, tmp_path: Path) -> None:
    path = tmp_path / "Astronaut Photo.jpg"
    portrait().save(path, format="JPEG")
    async with serving(replace(settings, avatar=str(path))) as http:
        listing = (await http.get("/api/avatars")).json()
        image = await http.get("/api/avatars/astronaut-photo/image")
    assert listing["default"] == "astronaut-photo"
    assert {"name": "astronaut-photo", "source": "startup"} in listing["avatars"]
    assert image.headers["content-type"] == "image/jpeg"
