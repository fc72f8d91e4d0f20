"""Corrupt portraits uploaded as avatars: a real PNG and JPEG truncated, with the wrong magic, with bits flipped
or bytes spliced in, and headers that promise an enormous image. Each upload is accepted (it still shows a face)
or refused with a 4xx in the JSON error shape; never a 5xx or a logged exception."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image
from starlette.testclient import TestClient

from streaming.lite.default_portrait import default_portrait_path
from tests.server.fuzzing import LogWatcher, app_client, assert_json_error, examples, tried

PORTRAIT_SIDE = 160
"""Small, so that an upload that survives its corruption costs little face detection."""
MAGICS = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"RIFF\x00\x00\x00\x00WEBP", b"\x00" * 4, b""]


def encoded(image_format: str) -> bytes:
    with Image.open(default_portrait_path()) as portrait:
        small = portrait.convert("RGB").resize((PORTRAIT_SIDE, PORTRAIT_SIDE))
    buffer = io.BytesIO()
    small.save(buffer, format=image_format)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header promises `width` x `height` pixels over a few bytes of data: a decompression bomb's
    calling card."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


PORTRAITS = {"png": encoded("PNG"), "jpeg": encoded("JPEG")}


@st.composite
def corrupt_images(draw: st.DrawFn) -> bytes:
    data = bytearray(PORTRAITS[draw(st.sampled_from(sorted(PORTRAITS)))])
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["truncate", "magic", "flip", "splice", "zero"]))
        if not data:
            break
        place = draw(st.integers(0, len(data) - 1))
        if action == "truncate":
            del data[place:]
        elif action == "magic":
            magic = draw(st.sampled_from(MAGICS))
            data[: len(magic)] = magic
        elif action == "flip":
            for _ in range(draw(st.integers(1, 32))):
                position = draw(st.integers(0, len(data) - 1))
                data[position] ^= 1 << draw(st.integers(0, 7))
        elif action == "splice":
            data[place:place] = draw(st.binary(min_size=1, max_size=64))
        else:
            data[place : place + draw(st.integers(1, 256))] = b"\x00" * 256
    return bytes(data)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with app_client(tmp_path_factory.mktemp("fuzz-images")) as test_client:
        yield test_client


@examples(80)
@given(image=corrupt_images())
@example(image=png_claiming(100_000, 100_000))
@example(image=png_claiming(4096, 4096))
@example(image=png_claiming(0, 0))
@example(image=PORTRAITS["png"][:33])
@example(image=PORTRAITS["jpeg"][:2])
@example(image=b"")
def test_a_corrupt_portrait_is_accepted_or_refused_with_a_json_4xx(
    client: TestClient, error_logs: LogWatcher, image: bytes
) -> None:
    response = client.post("/api/avatars", files={"image": ("portrait.png", image, "image/png")})
    tried(f"corrupt portrait (POST /api/avatars) → {response.status_code}")
    if response.status_code != 201:
        assert_json_error(response)
    error_logs.assert_quiet()


def test_the_uncorrupted_portraits_are_accepted(client: TestClient) -> None:
    """The fuzzing starts from images the server takes, so what it finds is the corruption's doing."""
    for name, image in PORTRAITS.items():
        response = client.post("/api/avatars", files={"image": (f"{name}.img", image, "image/png")})
        assert response.status_code == 201, response.text
