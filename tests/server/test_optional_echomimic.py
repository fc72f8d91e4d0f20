"""The default install has no torch: the server and `lite` run without it, and asking for EchoMimic says what to
install. Each case runs in a fresh interpreter where torch, diffusers and safetensors cannot be imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

WITHOUT_TORCH = """
import sys
for package in ("torch", "diffusers", "safetensors"):
    sys.modules[package] = None  # `import torch` now raises ImportError, as on a machine without it
"""


def run_without_torch(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH + code], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_the_server_builds_and_draws_lite_frames_without_torch(tmp_path: Path) -> None:
    code = f"""
from server.app import create_app
from server.settings import ServerSettings
create_app(ServerSettings(avatar_dir={str(tmp_path)!r}))
assert not any(name.split(".")[0] in ("torch", "diffusers", "safetensors") and module is not None
               for name in sys.modules for module in [sys.modules[name]]), "torch was imported"
assert "echomimic.streaming_renderer" not in sys.modules, "the echomimic renderer was imported"
print("built")
"""
    result = run_without_torch(code, Path(__file__).parents[2])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "built"


def test_asking_for_echomimic_without_torch_says_what_to_install(tmp_path: Path) -> None:
    code = f"""
from server.cli import main
sys.exit(main(["serve", "--renderer", "echomimic", "--weights", {str(tmp_path)!r}, "--port", "0"]))
"""
    result = run_without_torch(code, Path(__file__).parents[2])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "torch" in lines[0] and "pip install 'echomimic-live[echomimic]'" in lines[0]
