"""Where the face is and where its moving parts sit: face box, eyes, mouth, chin.

Detection uses the Haar cascades that ship inside the OpenCV wheel, so nothing is downloaded. Cascades find
faces reliably but eyes and mouths only sometimes, so every feature starts from a face-proportion prior (measured
relative to the frontal-face cascade's box) and a detection only replaces the prior when it lands near it.
The mouth is then refined from the image itself: lips are redder than the skin around them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from streaming.frames import RgbImage

Point = tuple[float, float]
Box = tuple[float, float, float, float]
"""(x, y, width, height) in pixels."""

NO_FACE_MESSAGE = (
    "no face found in the portrait: use a well-lit, front-facing photo where one face is clearly visible "
    "and takes up a good part of the picture"
)

# Face proportions relative to the frontal-face cascade's box (x and y as fractions of its width and height).
EYE_PRIOR_X = (0.31, 0.69)
EYE_PRIOR_Y = 0.39
EYE_HALF_WIDTH = 0.095
EYE_APERTURE = 0.38
"""Half-height of an open eye as a fraction of its half-width."""
MOUTH_PRIOR_Y = 0.81
MOUTH_PRIOR_WIDTH = 0.40
CHIN_BELOW_MOUTH = 0.68
"""Mouth-to-chin distance as a fraction of the eye-to-mouth distance."""
JAW_HALF_WIDTH = 0.40

_DETECTION_SIDE = 640
"""Faces are searched on a copy whose longer side is about this long: enough detail, bounded cost."""
_MIN_FACE_FRACTION = 0.12
"""Faces narrower than this fraction of the picture's shorter side are too small to animate."""
_MIN_LIP_CONTRAST = 4.0
"""Lips must be at least this much redder (Lab a*) than the skin for the image to override the prior."""


@dataclass(frozen=True, slots=True)
class EyeLayout:
    center: Point
    half_width: float
    half_height: float
    """Half-height of the open aperture, from the centre to the upper lid."""


@dataclass(frozen=True, slots=True)
class FaceLayout:
    """The moving parts of one face, in pixel coordinates of the image it was located in."""

    face_box: Box
    left_eye: EyeLayout
    """The eye on the image's left."""
    right_eye: EyeLayout
    mouth_center: Point
    """The point where the lips meet."""
    mouth_width: float
    mouth_tilt: float
    """Angle of the lip line in radians (positive: the right corner sits lower)."""
    mouth_curve: float
    """How far the lip line at the corners sits below its centre, in pixels (negative for a smile)."""
    chin: Point
    jaw_half_width: float
    """Half the jaw's width at the mouth's height."""

    @property
    def roll(self) -> float:
        """Tilt of the eye line in radians (positive: the right eye sits lower)."""
        (lx, ly), (rx, ry) = self.left_eye.center, self.right_eye.center
        return math.atan2(ry - ly, rx - lx)

    @property
    def face_width(self) -> float:
        return self.face_box[2]


def detect_face(image: RgbImage) -> Box:
    """The largest frontal face in an RGB image, as the frontal-face cascade's box in image pixels.

    Raises `ValueError` with a user-facing message when there is none.
    """
    height, width = image.shape[:2]
    scale = min(_DETECTION_SIDE / max(height, width), 4.0)
    small = np.asarray(
        cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA), dtype=np.uint8
    )
    gray = _equalized_gray(small)
    min_side = max(24, round(_MIN_FACE_FRACTION * min(gray.shape)))
    # Two differently trained cascades rarely fire on the same texture by chance: a face must be found by both,
    # which keeps noise and patterned backgrounds from passing as faces.
    found = _detect("haarcascade_frontalface_default.xml", gray, min_side=min_side, neighbours=6)
    confirming = _detect("haarcascade_frontalface_alt2.xml", gray, min_side=min_side, neighbours=6)
    faces = [box for box in found if any(_overlap(box, other) > 0.5 for other in confirming)]
    if not faces:
        raise ValueError(NO_FACE_MESSAGE)
    x, y, w, h = max(faces, key=lambda box: box[2] * box[3])
    return (x / scale, y / scale, w / scale, h / scale)


def locate_features(image: RgbImage, face_box: Box) -> FaceLayout:
    """Eyes, mouth and jaw of the face in `face_box`, from detections where they agree with the priors."""
    gray = _equalized_gray(image)
    left_eye, right_eye = _locate_eyes(gray, face_box)
    mouth = _locate_mouth(image, gray, face_box, left_eye.center, right_eye.center)
    (mx, my), (lx, ly), (rx, ry) = mouth.center, left_eye.center, right_eye.center
    chin = (mx + CHIN_BELOW_MOUTH * (mx - (lx + rx) / 2), my + CHIN_BELOW_MOUTH * (my - (ly + ry) / 2))
    return FaceLayout(
        face_box=face_box,
        left_eye=left_eye,
        right_eye=right_eye,
        mouth_center=mouth.center,
        mouth_width=mouth.width,
        mouth_tilt=mouth.tilt,
        mouth_curve=mouth.curve,
        chin=chin,
        jaw_half_width=JAW_HALF_WIDTH * face_box[2],
    )


def _equalized_gray(image: RgbImage) -> npt.NDArray[np.uint8]:
    return np.asarray(cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)), dtype=np.uint8)


def _detect(
    cascade_name: str,
    gray: npt.NDArray[np.uint8],
    *,
    min_side: int,
    neighbours: int,
    aspect: float = 1.0,
) -> list[Box]:
    # Loaded per call: a classifier is not safe to share between threads, and loading one takes milliseconds.
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + cascade_name)  # type: ignore[attr-defined]
    if cascade.empty():
        raise RuntimeError(f"OpenCV's {cascade_name} is missing; reinstall opencv-python-headless")
    found = cascade.detectMultiScale(
        gray, scaleFactor=1.1, minNeighbors=neighbours, minSize=(min_side, max(1, round(min_side * aspect)))
    )
    return [(float(x), float(y), float(w), float(h)) for x, y, w, h in found]


def _overlap(a: Box, b: Box) -> float:
    """Intersection over union."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    intersection = ix * iy
    return intersection / (a[2] * a[3] + b[2] * b[3] - intersection)


def _locate_eyes(gray: npt.NDArray[np.uint8], face_box: Box) -> tuple[EyeLayout, EyeLayout]:
    fx, fy, fw, fh = face_box
    top, bottom = round(fy + 0.15 * fh), round(fy + 0.6 * fh)
    left, right = round(fx), round(fx + fw)
    region = gray[max(0, top) : bottom, max(0, left) : right]
    centres: list[Point] = []
    if region.size:
        for cascade in ("haarcascade_eye.xml", "haarcascade_eye_tree_eyeglasses.xml"):
            boxes = _detect(cascade, region, min_side=max(8, round(0.12 * fw)), neighbours=3)
            centres = [(max(0, left) + x + w / 2, max(0, top) + y + h / 2) for x, y, w, h in boxes]
            if len(centres) >= 2:
                break
    tolerance = 0.12 * fw
    found = []
    for prior_x in EYE_PRIOR_X:
        prior = (fx + prior_x * fw, fy + EYE_PRIOR_Y * fh)
        found.append(_nearest_within(centres, prior, tolerance))
    mirror_axis = fx + fw / 2
    left_centre, right_centre = found
    if left_centre is None and right_centre is not None:
        left_centre = (2 * mirror_axis - right_centre[0], right_centre[1])
    if right_centre is None and left_centre is not None:
        right_centre = (2 * mirror_axis - left_centre[0], left_centre[1])
    if left_centre is None or right_centre is None:
        left_centre = (fx + EYE_PRIOR_X[0] * fw, fy + EYE_PRIOR_Y * fh)
        right_centre = (fx + EYE_PRIOR_X[1] * fw, fy + EYE_PRIOR_Y * fh)
    half_width = EYE_HALF_WIDTH * fw
    return (
        EyeLayout(left_centre, half_width, EYE_APERTURE * half_width),
        EyeLayout(right_centre, half_width, EYE_APERTURE * half_width),
    )


def _nearest_within(points: list[Point], target: Point, tolerance: float) -> Point | None:
    best = min(points, key=lambda p: math.dist(p, target), default=None)
    return best if best is not None and math.dist(best, target) <= tolerance else None


@dataclass(frozen=True, slots=True)
class _Mouth:
    center: Point
    width: float
    tilt: float
    curve: float


def _locate_mouth(
    image: RgbImage, gray: npt.NDArray[np.uint8], face_box: Box, left_eye: Point, right_eye: Point
) -> _Mouth:
    fx, fy, fw, fh = face_box
    eye_roll = math.atan2(right_eye[1] - left_eye[1], right_eye[0] - left_eye[0])
    prior = _Mouth(
        center=((left_eye[0] + right_eye[0]) / 2, fy + MOUTH_PRIOR_Y * fh),
        width=MOUTH_PRIOR_WIDTH * fw,
        tilt=eye_roll,
        curve=0.0,
    )
    detected = prior

    top, bottom = round(fy + 0.55 * fh), round(fy + 1.05 * fh)
    region = gray[max(0, top) : bottom, max(0, round(fx)) : round(fx + fw)]
    if region.size:
        smiles = _detect("haarcascade_smile.xml", region, min_side=round(0.25 * fw), neighbours=15, aspect=0.5)
        candidates = [(max(0, round(fx)) + x + w / 2, max(0, top) + y + h / 2, w) for x, y, w, h in smiles]
        plausible = [c for c in candidates if math.dist(c[:2], prior.center) < 0.12 * fw]
        if plausible:
            x, y, w = min(plausible, key=lambda c: math.dist(c[:2], prior.center))
            # The smile cascade's box runs past the lip corners by about a sixth on each side.
            detected = _Mouth(center=(x, y), width=0.75 * w, tilt=eye_roll, curve=0.0)

    seen = _lips_from_colour(image, detected.center, detected.width)
    if seen is None:
        return detected
    half_width = prior.width / 2
    return _Mouth(
        center=(
            detected.center[0],
            float(np.clip(seen.center[1], prior.center[1] - 0.08 * fh, prior.center[1] + 0.08 * fh)),
        ),
        width=float(np.clip(seen.width, 0.75 * prior.width, 1.3 * prior.width)),
        tilt=float(np.clip(seen.tilt, eye_roll - 0.1, eye_roll + 0.1)),
        curve=float(np.clip(seen.curve, -0.3 * half_width, 0.15 * half_width)),
    )


def _lips_from_colour(image: RgbImage, centre: Point, width: float) -> _Mouth | None:
    """The line where the lips meet, fitted as a parabola through the middle of the lips in every column, and the
    lips' width; None where the lips do not stand out in redness from the skin around them."""
    cx, cy = centre
    height, image_width = image.shape[:2]
    x0, x1 = max(0, round(cx - 0.7 * width)), min(image_width, round(cx + 0.7 * width))
    y0, y1 = max(0, round(cy - 0.35 * width)), min(height, round(cy + 0.45 * width))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    redness = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2LAB)[:, :, 1].astype(np.float32)
    redness = np.asarray(cv2.GaussianBlur(redness, (0, 0), 1.0), dtype=np.float32)
    redness -= float(np.median(redness))

    centre_cols = slice(max(0, round(cx - 0.25 * width) - x0), round(cx + 0.25 * width) - x0)
    row_profile = redness[:, centre_cols].mean(axis=1)
    peak = float(row_profile.max())
    if peak < _MIN_LIP_CONTRAST:
        return None
    # Upper and lower lip are separate runs of red rows (teeth may show between them); a run touching the
    # band's top edge is the nostrils' shadow, not a lip.
    lip_runs = [
        (start, stop)
        for start, stop in _runs(row_profile > 0.4 * peak)
        if start > 0 and float(row_profile[start:stop].max()) >= 0.6 * peak
    ]
    if not lip_runs:
        return None
    top, bottom = lip_runs[0][0], lip_runs[-1][1]
    col_profile = redness[top:bottom].mean(axis=0)
    cols = np.flatnonzero(col_profile > 0.2 * float(col_profile.max()))
    lips_width = float(cols.max() - cols.min() + 1)

    # Per column, the middle of the red mass; a smile bends this line up toward the corners.
    reach = max(2, (bottom - top) // 2)
    band = np.clip(redness[max(0, top - reach) : bottom + reach] - 0.3 * peak, 0, None)
    mass = band.sum(axis=0)
    rows = np.arange(band.shape[0], dtype=np.float32)[:, None] + max(0, top - reach) + y0
    middle = (band * rows).sum(axis=0) / np.maximum(mass, 1e-6)
    xs = np.arange(x0, x1, dtype=np.float32) - cx
    used = (mass > 0.1 * float(mass.max())) & (np.abs(xs) < 0.45 * lips_width)
    if used.sum() < 6:
        return None
    curvature, slope, level = np.polyfit(xs[used], middle[used], 2, w=np.sqrt(mass[used]))
    # The red mass of both lips centres a little below where they meet: the upper lip is usually the thinner.
    meeting = float(level) - 0.05 * (bottom - top)
    half = lips_width / 2
    return _Mouth(
        center=(cx, meeting), width=lips_width, tilt=math.atan(float(slope)), curve=float(curvature) * half * half
    )


def _runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """[start, stop) of every run of True values."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))
