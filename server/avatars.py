"""The portraits sessions can animate: the bundled default, a portrait named at startup, and uploads kept on disk.

Each portrait is analysed by the renderer once, which is also the face check, and the analysis is kept (in a
bounded `AvatarCache`) so that a session starts without waiting for face detection.

Names and files are checked wherever they come in: a name from a URL, an offer or a bot's start must match
`_NAME_PATTERN` before it comes near the disk, an uploaded file's name only suggests a name (reduced to that
pattern), and a portrait's bytes are checked from the header on before any pixel is decoded.
"""

from __future__ import annotations

import asyncio
import io
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Literal, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from server.avatar_cache import AvatarCache
from server.errors import ApiError
from streaming.frames import RgbImage
from streaming.lite.default_portrait import default_portrait_path

AvatarT = TypeVar("AvatarT")

DEFAULT_AVATAR = "default"
ACCEPTED_FORMATS = frozenset({"PNG", "JPEG", "MPO"})
"""What Pillow calls the formats portraits may come in; MPO is the JPEG with extra pictures many phones write."""
UNREADABLE_IMAGE = "the file is not a readable PNG or JPEG image"
MIN_SIDE = 64
MAX_SIDE = 4096
"""Larger portraits gain nothing (renderers work at a few hundred pixels) and cost memory to decode."""
MAX_EXPANSION = 500
"""A portrait whose pixels take more than this many times its file's bytes is refused as a decompression bomb (a
photo expands 5 to 50 times) once its pixels would take more than `BOMB_FLOOR_BYTES`."""
BOMB_FLOOR_BYTES = 16 * 1024 * 1024
_SIDE_RULE = f"each side must be between {MIN_SIDE} and {MAX_SIDE} pixels"
_TOO_LARGE = "the image is far too large to decode"
_SIXTEEN_BIT_GREY = frozenset({"I", "I;16", "I;16B", "I;16L"})
_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_NAME_RULE = "names are 1 to 64 lowercase ASCII letters, digits, '-' and '_', and start with a letter or digit"
_SHOWN_NAME_LENGTH = 40
_BASE_NAME_LENGTH = 48
"""Names taken from file names are cut to this, leaving room for a `-2` style suffix."""

AvatarSource = Literal["bundled", "startup", "uploaded"]


@dataclass(frozen=True, slots=True)
class AvatarInfo:
    name: str
    source: AvatarSource


class AvatarStore(Generic[AvatarT]):
    """Named portraits and their renderer analyses. `prepare` is the renderer's `prepare_avatar`."""

    def __init__(
        self,
        upload_dir: Path,
        prepare: Callable[[RgbImage], AvatarT],
        max_upload_bytes: int,
        cache: AvatarCache[AvatarT],
        startup_avatar: str | None = None,
    ) -> None:
        self._upload_dir = upload_dir
        self._prepare = prepare
        self._max_upload_bytes = max_upload_bytes
        self._fixed: dict[str, tuple[Path, AvatarSource]] = {DEFAULT_AVATAR: (default_portrait_path(), "bundled")}
        self._prepared = cache
        self._saving: set[str] = set()
        """Names of uploads being written: taken, though not on disk yet."""
        self.default_name = self._resolve_startup_avatar(startup_avatar)

    def list(self) -> list[AvatarInfo]:
        fixed = [AvatarInfo(name, source) for name, (_, source) in self._fixed.items()]
        uploaded = [AvatarInfo(name, "uploaded") for name in sorted(self._uploaded_names())]
        return fixed + uploaded

    def image_path(self, name: str) -> Path:
        check_avatar_name(name)
        if name in self._fixed:
            return self._fixed[name][0]
        path = self._upload_dir / f"{name}.png"
        # A link in the avatar folder must not lead the server to a file outside it.
        if not path.is_file() or not path.resolve().is_relative_to(self._upload_dir.resolve()):
            raise ApiError(404, "unknown_avatar", f"there is no avatar named {name!r}")
        return path

    def media_type(self, name: str) -> str:
        return "image/jpeg" if self.image_path(name).suffix.lower() in {".jpg", ".jpeg"} else "image/png"

    def prepare_default(self) -> AvatarT:
        """Analyse the default portrait now, so a portrait without a face fails at startup, not at first call."""
        name = self.default_name
        path = self.image_path(name)
        try:
            prepared = self._prepare(decode_png_or_jpeg(path.read_bytes()))
        except ApiError as error:
            raise ValueError(f"the avatar {path} cannot be used: {error.message}") from error
        except ValueError as error:
            raise ValueError(f"the avatar {path} cannot be used: {error}") from error
        self._prepared.put(name, prepared)
        return prepared

    async def prepared(self, name: str) -> AvatarT:
        """The renderer's analysis of the named portrait (computed on first use, in a worker thread)."""
        check_avatar_name(name)
        prepared = self._prepared.get(name)
        if prepared is None:
            portrait = decode_png_or_jpeg(await asyncio.to_thread(self.image_path(name).read_bytes))
            prepared = await self._prepare_or_reject(portrait)
            self._prepared.put(name, prepared)
        return prepared

    async def upload(self, data: bytes, filename: str | None) -> AvatarInfo:
        """Check an uploaded portrait (size, format, a face) and keep it under a fresh name taken from its file."""
        if len(data) > self._max_upload_bytes:
            raise ApiError(
                413,
                "upload_too_large",
                f"the image is {len(data) / 1e6:.1f} MB; the limit is {self._max_upload_bytes / 1e6:.1f} MB",
            )
        portrait = decode_png_or_jpeg(data)
        prepared = await self._prepare_or_reject(portrait)
        name = self._fresh_name(_file_stem(filename))
        self._saving.add(name)
        try:
            await asyncio.to_thread(_save_png, portrait, self._upload_dir, name)
        finally:
            self._saving.discard(name)
        self._prepared.put(name, prepared)
        return AvatarInfo(name, "uploaded")

    async def _prepare_or_reject(self, portrait: RgbImage) -> AvatarT:
        try:
            return await asyncio.to_thread(self._prepare, portrait)
        except ValueError as error:
            raise ApiError(422, "no_face", str(error)) from error

    def _resolve_startup_avatar(self, startup_avatar: str | None) -> str:
        if startup_avatar is None:
            return DEFAULT_AVATAR
        path = Path(startup_avatar).expanduser()
        # A file is the operator's own choice; anything else must be the name of an avatar there is.
        if path.is_file():
            name = self._fresh_name(path.stem)
            self._fixed[name] = (path, "startup")
            return name
        if startup_avatar in self._fixed or startup_avatar in self._uploaded_names():
            return startup_avatar
        known = ", ".join(info.name for info in self.list())
        raise ValueError(
            f"no avatar {startup_avatar!r}: give the path of a PNG or JPEG portrait, or one of the names {known}"
        )

    def _uploaded_names(self) -> set[str]:
        if not self._upload_dir.is_dir():
            return set()
        return {path.stem for path in self._upload_dir.glob("*.png") if _NAME_PATTERN.fullmatch(path.stem)}

    def _fresh_name(self, wanted: str) -> str:
        base = re.sub(r"[^a-z0-9_-]+", "-", wanted.lower()).strip("-_")[:_BASE_NAME_LENGTH] or "avatar"
        taken = set(self._fixed) | self._uploaded_names() | self._saving
        name, number = base, 2
        while name in taken:
            name, number = f"{base}-{number}", number + 1
        return name


def check_avatar_name(name: str) -> None:
    """Refuse, with a 422 that says why, a name no avatar can have: nothing that reaches the disk is built from
    anything but such a name."""
    if _NAME_PATTERN.fullmatch(name) is None:
        shown = name if len(name) <= _SHOWN_NAME_LENGTH else f"{name[:_SHOWN_NAME_LENGTH]}…"
        raise ApiError(422, "invalid_avatar_name", f"{shown!r} is not an avatar name: {_NAME_RULE}")


def decode_png_or_jpeg(data: bytes) -> RgbImage:
    """A PNG or JPEG as an upright RGB array; anything else is refused with a message for the uploader. The header
    is checked before any pixel is decoded, so an image too large to be worth decoding, or one whose pixels would
    take hundreds of times its own size, never is; a truncated or corrupt one is refused whole."""
    try:
        with warnings.catch_warnings():
            # Pillow only warns of an image between its two pixel limits, as if it might be decoded; it never is.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # A camera's malformed EXIF costs the picture its orientation, nothing more.
            warnings.filterwarnings("ignore", "Corrupt EXIF data", UserWarning)
            with Image.open(io.BytesIO(data)) as image:
                _check_header(image, len(data))
                upright = ImageOps.exif_transpose(_eight_bit(image))
                return np.asarray(upright.convert("RGB"), dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ApiError(422, "bad_image_size", f"{_TOO_LARGE}; {_SIDE_RULE}") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise ApiError(415, "unsupported_image", UNREADABLE_IMAGE) from error


def _eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit grey image scaled to 8 bits (Pillow's conversion would clip it to white instead)."""
    if image.mode not in _SIXTEEN_BIT_GREY:
        return image
    scaled = Image.fromarray((np.asarray(image, dtype=np.uint32) >> 8).astype(np.uint8), mode="L")
    scaled.info = image.info
    return scaled


def _check_header(image: Image.Image, file_bytes: int) -> None:
    if image.format not in ACCEPTED_FORMATS:
        raise ApiError(415, "unsupported_image", f"{image.format} images are not accepted; use PNG or JPEG")
    if image.format == "PNG" and getattr(image, "n_frames", 1) > 1:
        raise ApiError(415, "unsupported_image", "animated PNGs are not accepted; use a still PNG or JPEG")
    width, height = image.size
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE:
        raise ApiError(422, "bad_image_size", f"the image is {width}×{height}; {_SIDE_RULE}")
    pixel_bytes = width * height * 3
    if pixel_bytes > BOMB_FLOOR_BYTES and pixel_bytes > MAX_EXPANSION * file_bytes:
        raise ApiError(
            422,
            "decompression_bomb",
            f"the image claims {width}×{height} pixels ({pixel_bytes / 1e6:.0f} MB) from a file of "
            f"{file_bytes / 1e3:.0f} kB; no photo compresses that far, so it is not decoded",
        )


def _file_stem(filename: str | None) -> str:
    """What an uploaded file's name suggests as an avatar name: its last part without the extension, whichever
    separator the uploader's system uses."""
    return Path((filename or "").replace("\\", "/")).stem or "avatar"


def _save_png(portrait: RgbImage, folder: Path, name: str) -> None:
    """Write under a hidden name, then rename: a reader never sees a half-written portrait."""
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{name}.png.part"
    Image.fromarray(portrait).save(partial, format="PNG")
    partial.replace(folder / f"{name}.png")
