"""Avatar names and paths from every way in (a URL, an offer or a bot's start, an upload's file name): a hostile
one gets a 404 or a 422 that says why, and never reaches a file outside the avatar folder."""

from __future__ import annotations

import asyncio
import io
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from server.app import create_app
from server.avatar_cache import AvatarCache
from server.avatars import AvatarStore
from server.errors import ApiError
from server.settings import ServerSettings
from streaming.frames import RgbImage
from streaming.lite.default_portrait import default_portrait_path
from streaming.renderer import AvatarMemory
from tests.server.conftest import serving
from tests.server.fake_renderer import LoudnessRenderer

HOSTILE_NAMES = [
    "..",
    "../default",
    "..%2F..%2Fetc%2Fpasswd",
    "/etc/passwd",
    "default\x00.png",
    "ｄｅｆａｕｌｔ",  # fullwidth look-alikes
    "dеfault",  # a Cyrillic е
    "Default",
    "default.png",
    "a" * 65,
    "a" * 10_000,
    "",
    "-leading-dash",
    "trailing-newline\n",
]


def shape_of(portrait: RgbImage) -> tuple[int, ...]:
    return portrait.shape


def store(folder: Path) -> AvatarStore[tuple[int, ...]]:
    cache: AvatarCache[tuple[int, ...]] = AvatarCache(8, 2**30, lambda _: AvatarMemory(0), keep=lambda: ())
    return AvatarStore(folder, shape_of, 2**20, cache)


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.open(default_portrait_path()).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_a_hostile_name_is_refused_before_the_disk(name: str, tmp_path: Path) -> None:
    avatars = store(tmp_path / "avatars")
    for attempt in (avatars.prepared(name), _image_path(avatars, name)):
        with pytest.raises(ApiError) as refused:
            await attempt
        assert (refused.value.status, refused.value.code) == (422, "invalid_avatar_name")
        assert "lowercase" in refused.value.message
        assert len(refused.value.message) < 200, "an overlong name is not echoed whole"


async def _image_path(avatars: AvatarStore[tuple[int, ...]], name: str) -> Path:
    return avatars.image_path(name)


@pytest.mark.parametrize(
    "url_name",
    ["..", "%2e%2e", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "a%00b", "%EF%BD%84efault", "x" * 300, "Default"],
)
async def test_hostile_names_in_urls_get_404_or_422_never_a_file(settings: ServerSettings, url_name: str) -> None:
    async with serving(settings) as http:
        response = await http.get(f"/api/avatars/{url_name}/image")
    assert response.status_code in {404, 422}, response.text
    assert response.json()["error"]["message"]


async def test_a_link_out_of_the_avatar_folder_is_not_followed(tmp_path: Path) -> None:
    folder = tmp_path / "avatars"
    folder.mkdir()
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes())
    (folder / "escape.png").symlink_to(secret)
    avatars = store(folder)
    with pytest.raises(ApiError) as refused:
        await avatars.prepared("escape")
    assert (refused.value.status, refused.value.code) == (404, "unknown_avatar")


@pytest.mark.parametrize(
    ("filename", "name"),
    [
        ("../../evil.png", "evil"),
        ("..\\..\\windows\\evil.png", "evil"),
        ("/etc/passwd", "passwd"),
        ("C:\\Users\\me\\Photo 1.JPG", "photo-1"),
        ("nul\x00byte.png", "nul-byte"),
        ("ｆｕｌｌｗｉｄｔｈ.png", "avatar"),
        ("Ünïcödé.png", "n-c-d"),
        ("a" * 5000 + ".png", "a" * 48),
        ("..", "avatar"),
        ("", "avatar"),
        (None, "avatar"),
    ],
)
async def test_an_upload_is_named_from_its_file_name_inside_the_folder(
    tmp_path: Path, filename: str | None, name: str
) -> None:
    folder = tmp_path / "avatars"
    info = await store(folder).upload(png_bytes(), filename)
    assert info.name == name
    assert files_under(tmp_path) == [folder / f"{name}.png"]


async def test_uploads_of_the_same_name_at_once_keep_both(tmp_path: Path) -> None:
    avatars = store(tmp_path / "avatars")
    first, second = await asyncio.gather(
        avatars.upload(png_bytes(), "same.png"), avatars.upload(png_bytes(), "same.png")
    )
    assert {first.name, second.name} == {"same", "same-2"}
    assert files_under(tmp_path) == [tmp_path / "avatars/same-2.png", tmp_path / "avatars/same.png"]


def test_a_hostile_startup_name_is_refused_with_the_names_there_are(settings: ServerSettings) -> None:
    with pytest.raises(ValueError, match=r"no avatar '\.\./default'.*default"):
        create_app(replace(settings, avatar="../default"), renderer=LoudnessRenderer())
