"""`echolive bridge`: the avatar as a camera for video calls.

It calls the server over WebRTC as the web client does, with a microphone (or a file played as one), and writes
the avatar's video to a virtual camera (pyvirtualcam, the `[vcam]` extra: v4l2loopback on Linux, the OBS virtual
camera on Windows and macOS), so Zoom, Meet or Teams can pick it as a camera. The voice can go to an output
device (which a call app can then take as its microphone), delayed to stay in step with the video:

- `--voice-delay auto`: the voice the server echoes back, which it sends on the same schedule as the frames, so it
  arrives delayed by exactly the video's latency, measured on every packet;
- `--voice-delay SECONDS`: the local microphone, delayed by that much (for a server without echo, or to make up
  for what a call app adds to its camera).

`--sink FILE.mp4` writes the video and that voice to a file instead, each at the time it became available here:
what a call app would have got. A microphone file ends the bridge when it has been played; a device runs until
Ctrl-C (or `--duration`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import av
import cv2
import numpy as np
import numpy.typing as npt
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.media_files import read_speech
from server.recording import Recording
from server.speaking_track import MIC_RATE, SpeakingTrack
from streaming.clock import MonotonicClock
from streaming.frames import RgbImage

logger = logging.getLogger(__name__)

CAMERA_SIZE = (512, 512)
"""The virtual camera's frame size: both renderers draw 512x512; other sizes are scaled to it."""
CAMERA_FPS = 25.0
FILE_TAIL = 1.5
"""Seconds the bridge keeps running after a microphone file has been played, for the last frames."""
VOICE_RATE = 48_000
SYSTEM_ALSA_CONFIG = Path("/usr/share/alsa/alsa.conf")
MAX_VOICE_DELAY = 5.0
JITTER_MARGIN = 0.08
"""Seconds each received frame is held beyond the track's least latency, to absorb jitter."""
ANCHOR_LEAK = 0.001
"""Seconds per second the playout anchor may rise (clock drift is a few parts per million)."""

VIRTUAL_CAMERA_HELP = {
    "linux": (
        "create one with v4l2loopback:\n"
        "    sudo apt-get install v4l2loopback-dkms\n"
        '    sudo modprobe v4l2loopback devices=1 video_nr=10 card_label="EchoMimic" exclusive_caps=1\n'
        "then run the bridge with --camera /dev/video10"
    ),
    "darwin": "install OBS Studio and start its virtual camera once (Start Virtual Camera), then run the bridge again",
    "win32": "install OBS Studio and start its virtual camera once (Start Virtual Camera), then run the bridge again",
}


class BridgeError(Exception):
    """A failure the user can act on; the message says how."""


@dataclass(frozen=True)
class BridgeOptions:
    server: str
    token: str | None
    """The server's access token, sent as `Authorization: Bearer`; None for a server without one."""
    avatar: str | None
    mic: str
    camera: str | None
    sink: Path | None
    speaker: str | None
    voice_delay: float | None
    """None: auto (the server's echo)."""
    extra_voice_delay: float
    """Seconds added to the voice either way (what a call app adds to its camera, for one)."""
    duration: float | None


class VideoOut(Protocol):
    frames_written: int

    def frame(self, image: RgbImage, at: float) -> None:
        """A frame that became available at `at` seconds of the bridge's clock."""

    def close(self) -> None: ...


class VoiceOut(Protocol):
    def voice(self, samples: npt.NDArray[np.int16], at: float) -> None:
        """Mono PCM16 at `VOICE_RATE`, to be heard at `at` seconds of the bridge's clock."""

    def close(self) -> None: ...


def parse_voice_delay(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        delay = float(text)
    except ValueError:
        raise BridgeError(f"--voice-delay is 'auto' or a number of seconds, not {text!r}") from None
    return check_voice_delay("--voice-delay", delay)


def check_voice_delay(option: str, delay: float) -> float:
    if not 0 <= delay <= MAX_VOICE_DELAY:
        raise BridgeError(f"{option} must be between 0 and {MAX_VOICE_DELAY:g} seconds, not {delay:g}")
    return delay


def run_bridge(options: BridgeOptions) -> int:
    """Run until the microphone file ends, `duration` passes, or Ctrl-C; `BridgeError` for what the user can fix."""
    clock_zero = time.monotonic()
    video_out, voice_out = _open_outputs(options, clock_zero)
    try:
        asyncio.run(_bridge(options, video_out, voice_out, clock_zero))
    finally:
        video_out.close()
        if voice_out is not None:
            voice_out.close()
    if not video_out.frames_written:
        raise BridgeError("no video came from the server")
    return 0


def _open_outputs(options: BridgeOptions, clock_zero: float) -> tuple[VideoOut, VoiceOut | None]:
    if options.sink is not None:
        sink = FileSink(options.sink)
        return sink, sink
    camera = VirtualCamera(options.camera)
    try:
        speaker = Speaker(options.speaker, clock_zero) if options.speaker is not None else None
    except BridgeError:
        camera.close()
        raise
    return camera, speaker


async def _bridge(options: BridgeOptions, video_out: VideoOut, voice_out: VoiceOut | None, clock_zero: float) -> None:
    microphone, file_length = _microphone(options.mic)
    echo = options.voice_delay is None
    if voice_out is not None and options.voice_delay is not None:
        delay = options.voice_delay + options.extra_voice_delay
        microphone = _TappedMicrophone(microphone, lambda samples, at: voice_out.voice(samples, at + delay), clock_zero)
    peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    peer.addTransceiver(microphone, direction="sendrecv" if echo else "sendonly")
    peer.addTransceiver("video", direction="recvonly")
    tasks: list[asyncio.Task[None]] = []

    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "video":
            tasks.append(asyncio.create_task(_receive_video(track, video_out, clock_zero)))
        elif voice_out is not None:
            tasks.append(asyncio.create_task(_receive_voice(track, voice_out, clock_zero, options.extra_voice_delay)))

    peer.on("track", on_track)
    try:
        await peer.setLocalDescription(await peer.createOffer())
        answer = await asyncio.to_thread(_post_offer, options, peer.localDescription.sdp)
        await peer.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        extra = options.extra_voice_delay
        if echo:
            voice = "echoed by the server, in step with the video" + (f", and {extra:g} s later" if extra else "")
        else:
            assert options.voice_delay is not None
            voice = f"delayed {options.voice_delay + extra:g} s"
        print(
            f"bridging session {answer['session_id']}: playout delay {1000 * answer['playout_delay']:.0f} ms, "
            f"voice {voice}",
            file=sys.stderr,
        )
        await _run_until_done(options, file_length)
    finally:
        await peer.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        microphone.stop()


async def _run_until_done(options: BridgeOptions, file_length: float | None) -> None:
    limits = [limit for limit in (options.duration, None if file_length is None else file_length + FILE_TAIL) if limit]
    if limits:
        await asyncio.sleep(min(limits))
    else:
        await asyncio.Event().wait()  # a device: until Ctrl-C


def _microphone(mic: str) -> tuple[MediaStreamTrack, float | None]:
    """The track to send, and the length in seconds when it is a file."""
    path = Path(mic)
    if not path.exists() and ("/" in mic or path.suffix):
        raise BridgeError(f"the microphone file {mic} does not exist")
    if path.is_file():
        speech = read_speech(path, MIC_RATE)
        return SpeakingTrack(speech), len(speech) / MIC_RATE
    use_system_alsa_config()
    device_format, device = _capture_format(mic)
    try:
        player = MediaPlayer(device, format=device_format, options={"channels": "1", "sample_rate": str(MIC_RATE)})
    except (av.FFmpegError, OSError) as error:
        raise BridgeError(f"cannot open the microphone {mic!r} ({device_format}): {error}") from error
    if player.audio is None:
        raise BridgeError(f"{mic!r} has no audio to capture")
    return player.audio, None


def use_system_alsa_config() -> None:
    """PyAV's wheels bring their own ALSA library, which looks for its configuration where it was built and so
    knows no device at all; point it at the system's, unless the user already chose one."""
    if sys.platform.startswith("linux") and "ALSA_CONFIG_PATH" not in os.environ and SYSTEM_ALSA_CONFIG.is_file():
        os.environ["ALSA_CONFIG_PATH"] = str(SYSTEM_ALSA_CONFIG)


def _capture_format(mic: str) -> tuple[str, str]:
    if sys.platform == "darwin":
        return "avfoundation", mic if mic.startswith(":") else f":{mic}"
    if sys.platform == "win32":
        return "dshow", mic if mic.startswith("audio=") else f"audio={mic}"
    return "alsa", mic


def _post_offer(options: BridgeOptions, sdp: str) -> dict[str, Any]:
    body = json.dumps({"sdp": sdp, "type": "offer", "avatar": options.avatar}).encode()
    headers = {"Content-Type": "application/json"}
    if options.token is not None:
        headers["Authorization"] = f"Bearer {options.token}"
    request = urllib.request.Request(f"{options.server.rstrip('/')}/api/sessions", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as error:
        try:
            detail = json.load(error)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            detail = f"HTTP {error.code}"
        if error.code == 401:
            detail += " (give its token with --token, or set ECHOLIVE_TOKEN)"
        raise BridgeError(f"the server refused the session: {detail}") from error
    except OSError as error:
        raise BridgeError(f"cannot reach the server at {options.server}: {error}") from error
    return answer


async def _receive_video(track: MediaStreamTrack, out: VideoOut, clock_zero: float) -> None:
    playout = Dejitter(clock_zero)
    try:
        while True:
            frame = await track.recv()
            assert isinstance(frame, av.VideoFrame)
            at = await playout.wait_for(frame)
            out.frame(np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8), at)
    except MediaStreamError:
        return


async def _receive_voice(track: MediaStreamTrack, out: VoiceOut, clock_zero: float, extra_delay: float) -> None:
    playout = Dejitter(clock_zero)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=VOICE_RATE)
    try:
        while True:
            frame = await track.recv()
            assert isinstance(frame, av.AudioFrame)
            at = await playout.wait_for(frame)
            for mono in resampler.resample(frame):
                out.voice(mono.to_ndarray().reshape(-1).astype(np.int16), at + extra_delay)
    except MediaStreamError:
        return


class Dejitter:
    """Plays one received track by its own timestamps: each frame at `pts + anchor + JITTER_MARGIN`, where the
    anchor is the smallest `arrival - pts` seen (the track's latency without jitter), let up by `ANCHOR_LEAK` per
    second so that drift between the server's clock and ours cannot pull it away.

    The server sends video and voice on one schedule, so two tracks played this way keep the sync they were sent
    with, give or take the difference in what each takes to get here; played on arrival, each would carry its
    own jitter (tens of milliseconds, more on a loaded machine)."""

    def __init__(self, clock_zero: float) -> None:
        self._clock = MonotonicClock()
        self._clock_zero = clock_zero
        self._anchor: float | None = None
        self._last_arrival = 0.0

    async def wait_for(self, frame: av.VideoFrame | av.AudioFrame) -> float:
        """Wait until the frame is due; returns when that is (or when it came, if that was later), in seconds of the
        bridge's clock."""
        assert frame.pts is not None and frame.time_base is not None
        pts = float(frame.pts * frame.time_base)
        arrival = self._clock.now() - self._clock_zero
        if self._anchor is None:
            self._anchor = arrival - pts
        else:
            self._anchor = min(self._anchor + ANCHOR_LEAK * (arrival - self._last_arrival), arrival - pts)
        self._last_arrival = arrival
        due = pts + self._anchor + JITTER_MARGIN
        await self._clock.sleep_until(self._clock_zero + due)
        return max(due, arrival)


class _TappedMicrophone(MediaStreamTrack):
    """Passes the microphone through, and hands each chunk to `tap` with the time it was captured."""

    kind = "audio"

    def __init__(
        self, inner: MediaStreamTrack, tap: Callable[[npt.NDArray[np.int16], float], None], clock_zero: float
    ) -> None:
        super().__init__()
        self._inner = inner
        self._tap = tap
        self._clock_zero = clock_zero
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=VOICE_RATE)

    async def recv(self) -> av.AudioFrame:
        frame = await self._inner.recv()
        assert isinstance(frame, av.AudioFrame)
        captured = time.monotonic() - self._clock_zero - frame.samples / frame.sample_rate
        for mono in self._resampler.resample(frame):
            self._tap(mono.to_ndarray().reshape(-1).astype(np.int16), captured)
        return frame

    def stop(self) -> None:
        super().stop()
        self._inner.stop()


# Outputs.


class FileSink:
    """`--sink FILE.mp4`: video and voice into one file, each at the time it was due. Encoding runs on a thread of
    its own, so that it never holds up receiving (and so the timing of what is received)."""

    def __init__(self, path: Path) -> None:
        if not path.parent.is_dir():
            raise BridgeError(f"cannot write {path}: the folder {path.parent} does not exist")
        self._path = path
        self.frames_written = 0
        self._work: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._recording: Recording | None = None
        self._early_voice: list[tuple[npt.NDArray[np.int16], float]] = []
        self._writer = threading.Thread(target=self._write, name="sink", daemon=True)
        self._writer.start()

    def frame(self, image: RgbImage, at: float) -> None:
        self.frames_written += 1
        self._work.put(lambda: self._add_video(image, at))

    def voice(self, samples: npt.NDArray[np.int16], at: float) -> None:
        self._work.put(lambda: self._add_voice(samples, at))

    def close(self) -> None:
        """Finish the file; closing again does nothing (the sink is both the video and the voice output)."""
        if not self._writer.is_alive():
            return
        self._work.put(None)
        self._writer.join()
        if self._recording is not None:
            self._recording.close()
            print(f"wrote {self._path} ({self.frames_written} frames)", file=sys.stderr)

    def _write(self) -> None:
        while (job := self._work.get()) is not None:
            job()

    def _add_video(self, image: RgbImage, at: float) -> None:
        if self._recording is None:
            # The file takes the size of the first frame; voice that came before it waits for it.
            height, width = image.shape[:2]
            self._recording = Recording(self._path, width=width, height=height, sample_rate=VOICE_RATE)
            for samples, voice_at in self._early_voice:
                self._recording.add_audio(samples, voice_at)
            self._early_voice.clear()
        self._recording.add_video(image, at)

    def _add_voice(self, samples: npt.NDArray[np.int16], at: float) -> None:
        if self._recording is None:
            self._early_voice.append((samples, at))
        else:
            self._recording.add_audio(samples, at)


class VirtualCamera:
    """`--camera`: pyvirtualcam, imported only here so that the `[vcam]` extra stays optional."""

    def __init__(self, device: str | None) -> None:
        try:
            import pyvirtualcam
        except ImportError as error:
            raise BridgeError(
                "the virtual camera needs the vcam extra: pip install 'echomimic-live[vcam]' (or use --sink FILE.mp4)"
            ) from error
        width, height = CAMERA_SIZE
        try:
            self._camera = pyvirtualcam.Camera(width, height, CAMERA_FPS, device=device)
        except RuntimeError as error:
            how = VIRTUAL_CAMERA_HELP.get(sys.platform, VIRTUAL_CAMERA_HELP["linux"])
            raise BridgeError(f"no virtual camera to write to ({error}); {how}") from error
        self.frames_written = 0
        print(f"writing the avatar to the virtual camera {self._camera.device}", file=sys.stderr)

    def frame(self, image: RgbImage, at: float) -> None:
        if image.shape[1::-1] != CAMERA_SIZE:
            image = np.asarray(cv2.resize(image, CAMERA_SIZE, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        self._camera.send(image)
        self.frames_written += 1

    def close(self) -> None:
        self._camera.close()


class Speaker:
    """`--speaker DEVICE`: plays the voice into an output device through FFmpeg's ALSA output (Linux), each piece
    at its time, from a thread of its own (writing to a sound device blocks)."""

    def __init__(self, device: str, clock_zero: float) -> None:
        if not sys.platform.startswith("linux"):
            raise BridgeError("--speaker plays through ALSA, which only Linux has; use --sink or a loopback device")
        use_system_alsa_config()
        try:
            self._output = av.open(device, mode="w", format="alsa")
            self._stream = self._output.add_stream("pcm_s16le", rate=VOICE_RATE)
            self._stream.layout = "mono"
        except (av.FFmpegError, OSError) as error:
            raise BridgeError(f"cannot open the output device {device!r} (ALSA): {error}") from error
        self._clock_zero = clock_zero
        self._pieces: queue.Queue[tuple[npt.NDArray[np.int16], float] | None] = queue.Queue()
        self._written = 0
        self._player = threading.Thread(target=self._play, name="speaker", daemon=True)
        self._player.start()

    def voice(self, samples: npt.NDArray[np.int16], at: float) -> None:
        self._pieces.put((samples, at))

    def close(self) -> None:
        self._pieces.put(None)
        self._player.join(timeout=5)
        self._output.close()

    def _play(self) -> None:
        while (piece := self._pieces.get()) is not None:
            samples, at = piece
            time.sleep(max(0.0, self._clock_zero + at - time.monotonic()))
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = VOICE_RATE
            frame.pts = self._written
            self._written += len(samples)
            self._output.mux(self._stream.encode(frame))
