"""The S-curve every soft edge and easing in the lite renderer uses, so no feature starts or stops with a kink."""

from __future__ import annotations

from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

FloatArray = TypeVar("FloatArray", bound=npt.NDArray[np.floating[Any]])


def smoothstep(x: FloatArray) -> FloatArray:
    """0 at and below 0, 1 at and above 1, and 3x² - 2x³ between: flat at both ends. Keeps the array's dtype."""
    clipped = np.clip(x, 0, 1)
    return cast(FloatArray, clipped * clipped * (3 - 2 * clipped))
