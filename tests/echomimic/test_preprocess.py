"""Reference preparation: Haar face detection, the official mask and crop geometry, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from echomimic.preprocess import FaceBox, crop_around_face, detect_largest_face, prepare_reference

DEFAULT_PORTRAIT = Path(__file__).parents[2] / "streaming/assets/default_portrait.png"


def _astronaut() -> np.ndarray:
    """scikit-image's bundled photograph of astronaut Eileen Collins, uint8 RGB [512, 512, 3]."""
    return np.asarray(data.astronaut(), dtype=np.uint8)  # type: ignore[no-untyped-call]


def _gradient_image(height: int, width: int) -> np.ndarray:
    rows, columns = np.mgrid[0:height, 0:width]
    return np.stack([rows % 256, columns % 256, (rows + columns) % 256], axis=-1).astype(np.uint8)


def test_finds_the_astronauts_face() -> None:
    face = detect_largest_face(_astronaut())
    # Eileen Collins' face spans roughly x 180-270, y 70-160 in this 512x512 photograph.
    assert face.left < 225 < face.right
    assert face.top < 115 < face.bottom
    assert 60 <= face.width <= 150
    assert 60 <= face.height <= 150


def test_prepares_the_astronaut_as_a_square_face_crop_with_a_face_mask() -> None:
    prepared = prepare_reference(_astronaut(), size=256)
    assert prepared.image.shape == (256, 256, 3)
    assert prepared.image.dtype == np.uint8
    assert prepared.face_mask.shape == (256, 256)
    assert prepared.face_mask.dtype == np.float32
    assert set(np.unique(prepared.face_mask).tolist()) == {0.0, 1.0}
    # The crop is the face grown by half its size on each side, so the mask (grown by a tenth) sits in the middle
    # and covers (1.2 / 2)² of the crop.
    rows, columns = np.nonzero(prepared.face_mask)
    assert abs((rows.min() + rows.max()) / 2 - 128) < 8
    assert abs((columns.min() + columns.max()) / 2 - 128) < 8
    assert prepared.face_mask.mean() == pytest.approx(0.36, abs=0.05)


def test_the_default_portrait_has_a_usable_face() -> None:
    portrait = np.asarray(Image.open(DEFAULT_PORTRAIT).convert("RGB"))
    prepared = prepare_reference(portrait)
    assert prepared.image.shape == (512, 512, 3)
    assert 0.1 < prepared.face_mask.mean() < 0.6


def test_mask_and_crop_follow_the_official_growth_ratios() -> None:
    image = _gradient_image(300, 400)
    prepared = crop_around_face(image, FaceBox(left=100, top=80, right=180, bottom=160), size=160)
    # Crop: the box grown by 40 px on each side, (60, 40)-(220, 200); already square, so no resize.
    np.testing.assert_array_equal(prepared.image, image[40:200, 60:220])
    # Mask: the box grown by 8 px on each side, (92, 72)-(188, 168), in crop coordinates.
    expected = np.zeros((160, 160), dtype=np.float32)
    expected[32:128, 32:128] = 1.0
    np.testing.assert_array_equal(prepared.face_mask, expected)


def test_a_crop_cut_by_the_image_border_is_made_square_around_the_face_centre() -> None:
    image = _gradient_image(120, 400)
    prepared = crop_around_face(image, FaceBox(left=100, top=20, right=180, bottom=100), size=120)
    # Grown crop (60, 0)-(220, 120) is 160 wide but 120 tall: the square of side 120 centred on x = 140.
    np.testing.assert_array_equal(prepared.image, image[0:120, 80:200])
    expected = np.zeros((120, 120), dtype=np.float32)
    expected[12:108, 12:108] = 1.0
    np.testing.assert_array_equal(prepared.face_mask, expected)


def test_a_face_at_the_corner_is_clamped_not_wrapped() -> None:
    image = _gradient_image(100, 100)
    prepared = crop_around_face(image, FaceBox(left=2, top=1, right=42, bottom=41), size=61)
    # Crop (0, 0)-(62, 61) → square of side 61 from x = 1; mask (0, 0)-(46, 45) → crop columns 0-44, rows 0-44.
    np.testing.assert_array_equal(prepared.image, image[0:61, 1:62])
    expected = np.zeros((61, 61), dtype=np.float32)
    expected[0:45, 0:45] = 1.0
    np.testing.assert_array_equal(prepared.face_mask, expected)


def test_resizing_keeps_the_mask_binary() -> None:
    prepared = crop_around_face(_gradient_image(300, 400), FaceBox(left=100, top=80, right=180, bottom=160), size=512)
    assert prepared.image.shape == (512, 512, 3)
    assert set(np.unique(prepared.face_mask).tolist()) == {0.0, 1.0}
    assert prepared.face_mask.mean() == pytest.approx((96 / 160) ** 2, abs=0.01)


def test_an_image_without_a_face_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="no face found in the reference image"):
        prepare_reference(np.full((240, 320, 3), 128, dtype=np.uint8))


def test_images_that_are_not_uint8_rgb_are_refused() -> None:
    with pytest.raises(ValueError, match=r"uint8 RGB \[height, width, 3\]"):
        prepare_reference(np.zeros((64, 64), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"uint8 RGB \[height, width, 3\]"):
        prepare_reference(np.zeros((64, 64, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="size must be positive"):
        crop_around_face(_gradient_image(64, 64), FaceBox(10, 10, 30, 30), size=0)
