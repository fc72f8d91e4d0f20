"""Finding the face and its moving parts, and refusing pictures without one."""

from __future__ import annotations

import numpy as np
import pytest

from streaming.lite import LiteAvatar, LiteRenderer, default_portrait_path, load_portrait
from streaming.lite.face_layout import FaceLayout, detect_face, locate_features


def inside(point: tuple[float, float], box: tuple[float, float, float, float]) -> bool:
    x, y, w, h = box
    return x <= point[0] <= x + w and y <= point[1] <= y + h


def check_anatomy(layout: FaceLayout) -> None:
    left, right = layout.left_eye.center, layout.right_eye.center
    mouth = layout.mouth_center
    assert left[0] < mouth[0] < right[0]
    assert max(left[1], right[1]) < mouth[1] < layout.chin[1]
    assert inside(left, layout.face_box) and inside(right, layout.face_box)
    assert inside(mouth, layout.face_box)
    assert 0.25 * layout.face_width < layout.mouth_width < 0.6 * layout.face_width
    assert 0.25 * layout.face_width < right[0] - left[0] < 0.6 * layout.face_width


def test_layout_of_the_default_portrait() -> None:
    portrait = load_portrait(default_portrait_path())
    layout = locate_features(portrait, detect_face(portrait))
    check_anatomy(layout)
    # Measured by eye on the 512 x 512 default portrait: eyes near (225, 162) and (290, 166), lips meet near
    # (256, 234), lips about 68 px wide.
    assert np.allclose(layout.left_eye.center, (225, 162), atol=8)
    assert np.allclose(layout.right_eye.center, (290, 166), atol=8)
    assert np.allclose(layout.mouth_center, (256, 234), atol=6)
    assert 54 < layout.mouth_width < 80


def test_avatar_frames_the_face(avatar: LiteAvatar, renderer: LiteRenderer) -> None:
    check_anatomy(avatar.layout)
    width, height = renderer.frame_size
    face_x, _, face_w, _ = avatar.layout.face_box
    centre_x = face_x + face_w / 2 - avatar.margin
    assert abs(centre_x - width / 2) < 0.1 * width
    assert 0.3 * width < face_w < 0.6 * width
    assert avatar.layout.chin[1] - avatar.margin < height


def test_mirrored_portrait_mirrors_the_layout(avatar: LiteAvatar, renderer: LiteRenderer) -> None:
    portrait = load_portrait(default_portrait_path())
    mirrored = renderer.prepare_avatar(np.ascontiguousarray(portrait[:, ::-1]))
    check_anatomy(mirrored.layout)
    assert mirrored.layout.mouth_tilt == pytest.approx(-avatar.layout.mouth_tilt, abs=0.05)
    assert mirrored.layout.roll == pytest.approx(-avatar.layout.roll, abs=0.05)


@pytest.mark.parametrize(
    "picture",
    [
        np.tile(np.linspace(0, 255, 400, dtype=np.uint8)[None, :, None], (300, 1, 3)),
        np.random.default_rng(7).integers(0, 256, (360, 480, 3), dtype=np.uint8),
        np.full((256, 256, 3), 128, dtype=np.uint8),
    ],
    ids=["gradient", "noise", "flat"],
)
def test_a_picture_without_a_face_is_refused(renderer: LiteRenderer, picture: np.ndarray) -> None:
    with pytest.raises(ValueError, match="no face found in the portrait"):
        renderer.prepare_avatar(picture)


@pytest.mark.parametrize(
    ("picture", "message"),
    [
        (np.zeros((300, 300), dtype=np.uint8), "RGB image"),
        (np.zeros((300, 300, 3), dtype=np.float32), "RGB image"),
        (np.zeros((300, 300, 4), dtype=np.uint8), "3 colour channels"),
        (np.zeros((40, 300, 3), dtype=np.uint8), "at least 64 pixels"),
    ],
    ids=["grey", "float", "rgba", "tiny"],
)
def test_a_malformed_portrait_is_refused(renderer: LiteRenderer, picture: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        renderer.prepare_avatar(picture)
