"""Fixtures every test package may use: where the official EchoMimic conformance data lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CONFORMANCE_DIR_ENV = "ECHOMIMIC_CONFORMANCE_DIR"
DEFAULT_CONFORMANCE_DIR = Path(__file__).parents[2] / "shared/conformance/echomimic_v1"


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    """The EchoMimic v1 conformance folder: `shared/` beside the checkout, or `$ECHOMIMIC_CONFORMANCE_DIR`."""
    directory = Path(os.environ.get(CONFORMANCE_DIR_ENV, DEFAULT_CONFORMANCE_DIR))
    if not (directory / "README.md").is_file():
        pytest.skip(f"EchoMimic conformance data not found at {directory}; set {CONFORMANCE_DIR_ENV} to its folder")
    return directory
