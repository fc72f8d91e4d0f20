"""Portrait bytes as an attacker or a broken camera writes them: every image is generated here, never committed.

Bombs and corrupt files get a clear 4xx, decided from the header where it can be, before a pixel is decoded;
odd but honest files (huge metadata, a phone's second picture, 16-bit grey) decode to the picture they hold.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from server.avatars import decode_png_or_jpeg
from server.errors import ApiError
from server.settings import ServerSettings
from streaming.lite.default_portrait import default_portrait_path
from tests.server.conftest import serving

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IEND_LENGTH = 12


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_of_zeros(width: int, height: int) -> bytes:
    """An RGB PNG of black pixels: the pixels compress about a thousandfold, as a zlib bomb's do."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(bytes(height * (1 + 3 * width)), 9)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def portrait() -> Image.Image:
    return Image.open(default_portrait_path()).convert("RGB")


def encoded(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def with_chunk_after_header(png: bytes, extra: bytes) -> bytes:
    after_header = len(PNG_SIGNATURE) + 25
    return png[:after_header] + extra + png[after_header:]


def refusal(data: bytes) -> ApiError:
    with pytest.raises(ApiError) as refused:
        decode_png_or_jpeg(data)
    assert refused.value.message
    return refused.value


def test_a_zlib_bomb_behind_an_allowed_header_is_refused_before_any_pixel_is_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoded: list[Image.Image] = []
    original_load = ImageFile.ImageFile.load

    def spying_load(image: ImageFile.ImageFile) -> object:
        decoded.append(image)
        return original_load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spying_load)
    bomb = png_of_zeros(4096, 4096)
    error = refusal(bomb)
    assert len(bomb) < 100_000
    assert (error.status, error.code) == (422, "decompression_bomb")
    assert "4096×4096" in error.message
    assert decoded == [], "the header alone decided"


@pytest.mark.parametrize(("width", "height"), [(30_000, 30_000), (12_000, 12_000), (5000, 64), (32, 512)])
def test_a_header_out_of_bounds_is_refused_unread(width: int, height: int) -> None:
    error = refusal(_header_only_png(width, height))
    assert (error.status, error.code) == (422, "bad_image_size")


def _header_only_png(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
@pytest.mark.parametrize("kept", [0.5, 0.9])
def test_a_truncated_image_is_refused_whole(image_format: str, kept: float) -> None:
    data = encoded(portrait(), image_format)
    error = refusal(data[: round(len(data) * kept)])
    assert (error.status, error.code) == (415, "unsupported_image")


def test_a_compressed_text_bomb_is_refused() -> None:
    text_bomb = chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"a" * (64 * 2**20), 9))
    error = refusal(with_chunk_after_header(encoded(portrait(), "PNG"), text_bomb))
    assert (error.status, error.code) == (415, "unsupported_image")


def test_an_animated_png_is_refused_and_a_phones_second_picture_is_ignored() -> None:
    still = portrait()
    animated = encoded(still, "PNG", save_all=True, append_images=[still.rotate(10)])
    error = refusal(animated)
    assert (error.status, error.code) == (415, "unsupported_image")
    assert "animated" in error.message
    two_pictures = encoded(still, "MPO", save_all=True, append_images=[still.rotate(10)])
    assert decode_png_or_jpeg(two_pictures).shape == (*still.size[::-1], 3)


def test_huge_metadata_costs_nothing_but_its_bytes() -> None:
    still = portrait()
    png = encoded(still, "PNG")
    giant_text = chunk(b"tEXt", b"Comment\x00" + b"a" * (5 * 2**20))
    np.testing.assert_array_equal(decode_png_or_jpeg(with_chunk_after_header(png, giant_text)), np.asarray(still))
    jpeg = encoded(still, "JPEG")
    full_app_segment = b"\xff\xe1" + struct.pack(">H", 65535) + b"Exif\x00\x00" + bytes(65527)
    many_exif = jpeg[:2] + full_app_segment * 60 + jpeg[2:]
    np.testing.assert_array_equal(decode_png_or_jpeg(many_exif), decode_png_or_jpeg(jpeg))
    corrupt_exif = b"\xff\xe1" + struct.pack(">H", 40) + b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff" + bytes(22)
    np.testing.assert_array_equal(decode_png_or_jpeg(jpeg[:2] + corrupt_exif + jpeg[2:]), decode_png_or_jpeg(jpeg))


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    grey = np.asarray(portrait().convert("L"))
    deep = Image.fromarray(grey.astype(np.uint16) * 257)
    decoded = decode_png_or_jpeg(encoded(deep, "PNG"))
    np.testing.assert_array_equal(decoded[..., 0], grey)


def test_the_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (256, 128), (200, 30, 30))
    exif = image.getexif()
    exif[0x0112] = 6  # rotated 90° clockwise
    assert decode_png_or_jpeg(encoded(image, "JPEG", exif=exif)).shape == (256, 128, 3)


async def test_a_bomb_upload_gets_a_clear_422_and_metadata_is_not_kept(settings: ServerSettings) -> None:
    giant_text = chunk(b"tEXt", b"Comment\x00" + b"a" * (2 * 2**20))
    with_text = with_chunk_after_header(encoded(portrait(), "PNG"), giant_text)
    async with serving(settings) as http:
        bomb = await http.post("/api/avatars", files={"image": ("bomb.png", png_of_zeros(4096, 4096), "image/png")})
        kept = await http.post("/api/avatars", files={"image": ("texty.png", with_text, "image/png")})
    assert bomb.status_code == 422 and bomb.json()["error"]["code"] == "decompression_bomb"
    assert kept.status_code == 201, kept.text
    stored = settings.avatar_dir / "texty.png"
    assert stored.stat().st_size < len(with_text) - 2 * 2**20, "the portrait is stored from its pixels alone"
