"""Blinks for a portrait drawn by another renderer: `lite`'s eyelid rigs, placed by `lite`'s own face analysis.

EchoMimic's idle frames are its face crop, alive; it is handed `PortraitEyelids.find` (it never imports
`streaming.lite`) so that they blink exactly as `lite`'s do.
"""

from __future__ import annotations

from dataclasses import dataclass

from streaming.frames import RgbImage
from streaming.lite.eyes import EyeRig
from streaming.lite.face_layout import detect_face, locate_features


@dataclass(frozen=True, slots=True)
class PortraitEyelids:
    rigs: tuple[EyeRig, EyeRig]

    @classmethod
    def find(cls, portrait: RgbImage) -> PortraitEyelids:
        """Rigs for the eyes of the face in `portrait`; `ValueError` when there is no face."""
        layout = locate_features(portrait, detect_face(portrait))
        canvas_size = (portrait.shape[1], portrait.shape[0])
        return cls(
            (
                EyeRig.build(layout.left_eye, layout.roll, canvas_size),
                EyeRig.build(layout.right_eye, layout.roll, canvas_size),
            )
        )

    def close(self, image: RgbImage, closure: float) -> None:
        """Close both eyelids of `image` by `closure` (0 open, 1 shut), in place."""
        for rig in self.rigs:
            rig.close(image, closure)
