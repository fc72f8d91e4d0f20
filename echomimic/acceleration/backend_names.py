"""The names `--backend` takes (no torch needed: the CLI parses them before loading any model)."""

from __future__ import annotations

import enum


class Backend(enum.StrEnum):
    """How the denoising UNet runs, best first."""

    TENSORRT = "tensorrt"
    COMPILE = "compile"
    EAGER = "eager"


AUTO = "auto"
"""Take the best backend this machine can run."""
BACKEND_REQUESTS = (AUTO, *(backend.value for backend in Backend))
