"""The portraits sessions can animate: the bundled default, a portrait named at startup, and uploads kept on disk.

Each portrait is analysed by the renderer once, which is also the face check, and the analysis is kept so that a
session starts without waiting for face detection.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Literal, TypeVar

from PIL import Image, UnidentifiedImageError

from server.errors import ApiError
from streaming.frames import RgbImage
from streaming.lite.default_portrait import decode_portrait, default_portrait_path

AvatarT = TypeVar("AvatarT")

DEFAULT_AVATAR = "default"
ACCEPTED_FORMATS = frozenset({"PNG", "JPEG", "MPO"})
"""What Pillow calls the formats portraits may come in; MPO is the JPEG with extra pictures many phones write."""
UNREADABLE_IMAGE = "the file is not a readable PNG or JPEG image"
MIN_SIDE = 64
MAX_SIDE = 4096
"""Larger portraits gain nothing (renderers work at a few hundred pixels) and cost memory to decode."""
_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
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
        startup_avatar: str | None = None,
    ) -> None:
        self._upload_dir = upload_dir
        self._prepare = prepare
        self._max_upload_bytes = max_upload_bytes
        self._fixed: dict[str, tuple[Path, AvatarSource]] = {DEFAULT_AVATAR: (default_portrait_path(), "bundled")}
        self._prepared: dict[str, AvatarT] = {}
        self.default_name = self._resolve_startup_avatar(startup_avatar)

    def list(self) -> list[AvatarInfo]:
        fixed = [AvatarInfo(name, source) for name, (_, source) in self._fixed.items()]
        uploaded = [AvatarInfo(name, "uploaded") for name in sorted(self._uploaded_names())]
        return fixed + uploaded

    def image_path(self, name: str) -> Path:
        if name in self._fixed:
            return self._fixed[name][0]
        if _NAME_PATTERN.fullmatch(name) is None or not (self._upload_dir / f"{name}.png").is_file():
            raise ApiError(404, "unknown_avatar", f"there is no avatar named {name!r}")
        return self._upload_dir / f"{name}.png"

    def media_type(self, name: str) -> str:
        return "image/jpeg" if self.image_path(name).suffix.lower() in {".jpg", ".jpeg"} else "image/png"

    def prepare_default(self) -> AvatarT:
        """Analyse the default portrait now, so a portrait without a face fails at startup, not at first call."""
        name = self.default_name
        path = self.image_path(name)
        try:
            self._prepared[name] = self._prepare(decode_png_or_jpeg(path.read_bytes()))
            return self._prepared[name]
        except ApiError as error:
            raise ValueError(f"the avatar {path} cannot be used: {error.message}") from error
        except ValueError as error:
            raise ValueError(f"the avatar {path} cannot be used: {error}") from error

    async def prepared(self, name: str) -> AvatarT:
        """The renderer's analysis of the named portrait (computed on first use, in a worker thread)."""
        if name not in self._prepared:
            portrait = decode_png_or_jpeg(await asyncio.to_thread(self.image_path(name).read_bytes))
            self._prepared[name] = await self._prepare_or_reject(portrait)
        return self._prepared[name]

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
        name = self._fresh_name(Path(filename or "avatar").stem)
        self._upload_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(Image.fromarray(portrait).save, self._upload_dir / f"{name}.png", format="PNG")
        self._prepared[name] = prepared
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
        taken = set(self._fixed) | self._uploaded_names()
        name, number = base, 2
        while name in taken:
            name, number = f"{base}-{number}", number + 1
        return name


def decode_png_or_jpeg(data: bytes) -> RgbImage:
    """A PNG or JPEG as an upright RGB array; anything else is refused with a message for the uploader. The header
    is checked before any pixel is decoded, so an image too large to be worth decoding never is."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format, (width, height) = image.format, image.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as error:
        raise ApiError(415, "unsupported_image", UNREADABLE_IMAGE) from error
    if image_format not in ACCEPTED_FORMATS:
        raise ApiError(415, "unsupported_image", f"{image_format} images are not accepted; use PNG or JPEG")
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE:
        raise ApiError(
            422,
            "bad_image_size",
            f"the image is {width}×{height}; each side must be between {MIN_SIDE} and {MAX_SIDE} pixels",
        )
    try:
        return decode_portrait(data)
    except ValueError as error:
        raise ApiError(415, "unsupported_image", UNREADABLE_IMAGE) from error
