"""How fast the `lite` renderer draws frames on one CPU core.

Renders N seconds of speech-like audio (a vowel whose loudness and colour change at syllable rate, with pauses)
through the renderer's own windows, with blinks, head sway and breathing on, and reports wall time and CPU time
per frame. OpenCV is held to one thread so the number is per core.

    python -m bench.lite_fps [--seconds 20] [--size 512] [--fps 25] [--portrait PATH]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from streaming.frames import SAMPLE_RATE, AudioWindow, FloatAudio
from streaming.idle import IdleMotion
from streaming.lite import LiteRenderer, default_portrait_path, load_portrait
from streaming.windowing import WindowCutter


def speech_like(seconds: float, seed: int = 0) -> FloatAudio:
    """Syllables about 5 per second: a buzz at a wandering pitch through two moving resonances, fading in and out,
    with a pause every couple of seconds. Loud enough to open the mouth fully at its peaks."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 130 + 25 * np.sin(2 * np.pi * 0.3 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    harmonics = np.arange(1, 30)[:, None]
    first_formant = 500 + 250 * np.sin(2 * np.pi * 2.3 * t)
    second_formant = 1500 + 700 * np.sin(2 * np.pi * 1.7 * t + 1.0)
    frequencies = harmonics * pitch
    gains = 1 / (1 + ((frequencies - first_formant) / 150) ** 2) + 0.6 / (
        1 + ((frequencies - second_formant) / 200) ** 2
    )
    voice = (gains * np.sin(harmonics * phase)).sum(axis=0)
    syllables = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.7
    pauses = (np.sin(2 * np.pi * 0.4 * t) > -0.8).astype(np.float64)
    audio = voice * syllables * pauses + 0.01 * rng.standard_normal(len(t))
    audio *= 10 ** (-20 / 20) / np.sqrt(np.mean(audio**2))
    return np.asarray(audio, dtype=np.float32)


def windows(renderer: LiteRenderer, audio: FloatAudio) -> list[AudioWindow]:
    """Every frame's window, as a live stream cuts them, with the idle motion a live stream adds."""
    motion = IdleMotion()
    cutter = WindowCutter(renderer.window, renderer.fps, lambda index: motion.pose(index, renderer.fps))
    cutter.append(audio)
    return cutter.flush()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of audio to render")
    parser.add_argument("--size", type=int, default=512, help="frame width and height in pixels")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--portrait", type=Path, default=default_portrait_path())
    args = parser.parse_args()

    cv2.setNumThreads(1)
    renderer = LiteRenderer(fps=args.fps, frame_size=(args.size, args.size))
    started = time.perf_counter()
    avatar = renderer.prepare_avatar(load_portrait(args.portrait))
    prepare_ms = 1000 * (time.perf_counter() - started)
    cut = windows(renderer, speech_like(args.seconds))

    wall_ms, cpu_ms = [], []
    for window in cut:
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        frames = renderer.render_window(avatar, window)
        wall_ms.append(1000 * (time.perf_counter() - wall_start) / len(frames))
        cpu_ms.append(1000 * (time.process_time() - cpu_start) / len(frames))

    frames_drawn = sum(window.frame_count for window in cut)
    wall = np.array(wall_ms)
    print(f"lite renderer, {args.size}x{args.size}, {frames_drawn} frames ({args.seconds:g} s at {args.fps:g} fps)")
    print(f"cpu: {cpu_model()}; cv2 threads: {cv2.getNumThreads()}")
    print(f"prepare_avatar: {prepare_ms:.0f} ms")
    print(f"throughput: {1000 / wall.mean():.1f} fps")
    print(
        f"wall ms/frame: mean {wall.mean():.2f}, p50 {np.percentile(wall, 50):.2f}, p95 {np.percentile(wall, 95):.2f}"
    )
    print(f"cpu ms/frame: mean {np.mean(cpu_ms):.2f}")


if __name__ == "__main__":
    main()
