"""Where compiled UNet engines live on disk, and how one is found again for the same weights, GPU and window shape.

A TensorRT engine is only valid for the weights baked into it, the GPU model it was tuned on, the library versions
that built it, the dtype and the exact input shapes. Each engine file (`unet-<digest>.pt2`) sits beside a JSON
manifest holding that key; a lookup matches the whole key, so an engine built on another GPU or for other weights is
never loaded. Files are written under a temporary name and renamed, so a build that dies leaves nothing half-written.

The weights are identified by the name, size and modification time of the denoising UNet and motion module files
(hashing 3 GB on every start would cost more than it protects against).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from echomimic.acceleration.window_program import WindowShape
from echomimic.weights import EchoMimicWeights

ENGINE_SUFFIX = ".pt2"
"""torch.export's archive suffix: Torch-TensorRT saves engines inside an exported program."""
MANIFEST_SUFFIX = ".json"


def default_engine_dir() -> Path:
    """Engines are a cache: rebuilt when lost, so they go to the user's cache directory."""
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache_home / "echolive" / "engines"


def weights_fingerprint(weights: EchoMimicWeights) -> str:
    """Which denoising UNet weights an engine has baked in."""
    parts = []
    for path in (weights.denoising_unet, weights.motion_module):
        stat = path.stat()
        parts.append(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class EngineKey:
    """Everything an engine depends on."""

    weights: str
    device: str
    """GPU name and compute capability."""
    dtype: str
    shape: WindowShape
    unet_pass: str
    """Which `UNetPass` of the UNet the engine runs."""
    torch_version: str
    compiler_version: str
    """torch-tensorrt's version."""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_json(), sort_keys=True).encode()).hexdigest()[:20]


class EngineCache:
    """A folder of engines, each found by its `EngineKey`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def engine_path(self, key: EngineKey) -> Path:
        return self.directory / f"unet-{key.digest()}{ENGINE_SUFFIX}"

    def find(self, key: EngineKey) -> Path | None:
        """The engine built for `key`, or None when there is none (or its manifest does not match)."""
        path = self.engine_path(key)
        manifest = path.with_suffix(MANIFEST_SUFFIX)
        if not path.is_file() or not manifest.is_file():
            return None
        try:
            recorded = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return path if recorded == key.as_json() else None

    def store(self, key: EngineKey, write: Callable[[Path], None]) -> Path:
        """Let `write` create the engine file at a temporary path, then move it and its manifest into place."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.engine_path(key)
        partial = path.with_name(f"{path.stem}.partial{ENGINE_SUFFIX}")
        try:
            write(partial)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
        path.with_suffix(MANIFEST_SUFFIX).write_text(json.dumps(key.as_json(), indent=2, sort_keys=True) + "\n")
        return path

    def manifests(self) -> list[dict[str, Any]]:
        """The keys of every complete engine in the folder (for `echolive doctor`)."""
        if not self.directory.is_dir():
            return []
        found = []
        for manifest in sorted(self.directory.glob(f"unet-*{MANIFEST_SUFFIX}")):
            if manifest.with_suffix(ENGINE_SUFFIX).is_file():
                try:
                    found.append(json.loads(manifest.read_text()))
                except (OSError, json.JSONDecodeError):
                    continue
        return found
