"""The engine cache finds an engine only for the exact key it was built for, and never keeps a half-written one."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from echomimic.acceleration.engine_cache import EngineCache, EngineKey, weights_fingerprint
from echomimic.acceleration.window_program import WindowShape
from echomimic.weights import EchoMimicWeights
from tests.echomimic.fake_weights_folder import write_fake_weights_folder

KEY = EngineKey(
    weights="0123456789abcdef",
    device="NVIDIA H200 sm_90",
    dtype="float16",
    shape=WindowShape(1, 15, 64, 64),
    unet_pass="full",
    torch_version="2.13.0",
    compiler_version="2.13.0",
)


def _write(content: bytes) -> object:
    return lambda path: Path(path).write_bytes(content)


def test_an_engine_is_found_by_its_whole_key(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path / "engines")
    assert cache.find(KEY) is None
    path = cache.store(KEY, _write(b"engine"))  # type: ignore[arg-type]
    assert cache.find(KEY) == path and path.read_bytes() == b"engine"
    for other in (
        dataclasses.replace(KEY, shape=WindowShape(2, 15, 64, 64)),
        dataclasses.replace(KEY, device="NVIDIA GeForce RTX 4090 sm_89"),
        dataclasses.replace(KEY, weights="fedcba9876543210"),
        dataclasses.replace(KEY, compiler_version="2.14.0"),
    ):
        assert cache.find(other) is None
    assert cache.manifests() == [json.loads(json.dumps(KEY.as_json()))]


def test_a_manifest_that_does_not_match_hides_the_engine(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    path = cache.store(KEY, _write(b"engine"))  # type: ignore[arg-type]
    path.with_suffix(".json").write_text(json.dumps(KEY.as_json() | {"dtype": "float32"}))
    assert cache.find(KEY) is None
    path.with_suffix(".json").write_text("{not json")
    assert cache.find(KEY) is None
    assert cache.manifests() == []


def test_a_failed_build_leaves_nothing(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)

    def fail(path: Path) -> None:
        path.write_bytes(b"half an engine")
        raise RuntimeError("builder crashed")

    with pytest.raises(RuntimeError, match="builder crashed"):
        cache.store(KEY, fail)
    assert list(tmp_path.iterdir()) == []
    assert cache.find(KEY) is None


def test_weights_fingerprint_follows_the_unet_files(conformance_dir: Path, tmp_path: Path) -> None:
    weights = EchoMimicWeights.locate(write_fake_weights_folder(conformance_dir, tmp_path))
    before = weights_fingerprint(weights)
    assert weights_fingerprint(weights) == before
    stat = weights.denoising_unet.stat()
    os.utime(weights.denoising_unet, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert weights_fingerprint(weights) != before
