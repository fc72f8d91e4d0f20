"""The bundled portrait and reading portrait files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from streaming.lite import decode_portrait, default_portrait_path, load_portrait


def test_default_portrait_is_a_square_rgb_image() -> None:
    portrait = load_portrait(default_portrait_path())
    assert portrait.dtype == np.uint8
    assert portrait.shape == (512, 512, 3)


def test_default_portrait_has_its_licence_beside_it() -> None:
    licence = default_portrait_path().parent / "LICENSE-default-portrait.md"
    assert "public domain" in licence.read_text().lower()


def test_load_portrait_returns_rgb_order(tmp_path: Path) -> None:
    reddish = np.zeros((80, 80, 3), dtype=np.uint8)
    reddish[..., 0] = 200
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), cv2.cvtColor(reddish, cv2.COLOR_RGB2BGR))
    assert np.array_equal(load_portrait(path), reddish)


def test_alpha_is_dropped() -> None:
    rgba = np.full((70, 90, 4), 255, dtype=np.uint8)
    ok, png = cv2.imencode(".png", rgba)
    assert ok
    assert decode_portrait(png.tobytes()).shape == (70, 90, 3)


def test_a_file_that_is_not_an_image_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("not a picture")
    with pytest.raises(ValueError, match="is not an image that can be read"):
        load_portrait(path)


def test_empty_bytes_are_refused() -> None:
    with pytest.raises(ValueError, match="is not an image that can be read"):
        decode_portrait(b"")


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read the portrait"):
        load_portrait(tmp_path / "missing.jpg")
