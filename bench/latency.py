"""Latency over loopback: speech onset to the first open-mouth frame, and the A/V offset of the echoed voice.

    python -m bench.latency [--phrases 12] [--fps 25] [--playout-delay SECONDS]

Starts the server in a child process (lite renderer, bundled portrait, ICE on 127.0.0.1 only) and calls it from
an aiortc client that speaks espeak-ng phrases, each after a stretch of silence, in real time. Everything is
timed on the client's clock:

- speech onset: when the first loud sample of a phrase is spoken, i.e. `start + sample / rate` on the schedule
  the client sends its 20 ms packets by (each when its last sample would have been captured);
- first open mouth: when the first video frame after the onset whose mouth box shows more dark (mouth cavity)
  pixels than any idle frame did arrived: its last RTP packet, stamped before aiortc's jitter buffer, so the
  client's own buffering is not counted;
- echoed onset: when the echoed voice's first loud sample arrived (its RTP packet, stamped the same way).

onset-to-mouth = first open mouth - speech onset. A/V offset = first open mouth - echoed onset, positive when
the sound leads the picture (the sign convention of ITU-R BT.1359, whose detectability window is +45/-125 ms).
Both include what a real call has on the way: Opus encoding on the client, aiortc's receive jitter buffer on
the server, the stream's pipeline and the playout delay, VP8 or Opus encoding on the server, and loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import tempfile
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket

from bench.child_server import child_server
from bench.mouth_probe import MouthProbe
from server.ice_addresses import restrict_ice_host_addresses
from server.speaking_track import MIC_RATE, SpeakingTrack
from streaming.clock import MonotonicClock
from streaming.lite.default_portrait import default_portrait_path, load_portrait
from streaming.lite.renderer import LiteRenderer

PHRASES = (
    "Hello there.",
    "Good morning, everyone.",
    "Paris is lovely in May.",
    "My name is Eileen.",
    "Pass the salt, please.",
    "Today is Monday.",
    "Look at that!",
    "Bring me the map.",
    "We fly at dawn.",
    "Barbara baked bread.",
    "Open the window.",
    "Mind the gap.",
)
SILENCE_BEFORE = 1.6
"""Seconds of silence before each phrase: longer than the VAD's hang-over, so every phrase is a fresh onset."""
TAIL = 1.5
ONSET_DBFS = -35.0
ONSET_QUIET = 0.5
"""An onset is a loud 10 ms after at least this many seconds below the threshold."""
PAIRING_WINDOW = 1.0
IDLE_MARGIN = 0.008
"""Share of dark pixels above the most any idle frame shows that counts as an open mouth (idle: about 0.007)."""
MIN_OPEN = 0.015


# The speech the client says.


def make_speech(count: int, workdir: Path) -> tuple[npt.NDArray[np.float32], list[float]]:
    """`count` phrases, each after `SILENCE_BEFORE` s of silence, at 48 kHz; and each phrase's onset in seconds."""
    pieces: list[npt.NDArray[np.float32]] = []
    for number in range(count):
        wav = workdir / f"phrase{number}.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), PHRASES[number % len(PHRASES)]], check=True, timeout=60)
        pieces += [np.zeros(round(SILENCE_BEFORE * MIC_RATE), dtype=np.float32), read_audio(wav)]
    pieces.append(np.zeros(round(TAIL * MIC_RATE), dtype=np.float32))
    speech = np.concatenate(pieces)
    return speech, [index / MIC_RATE for index in onsets(speech)]


def read_audio(path: Path) -> npt.NDArray[np.float32]:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=MIC_RATE)
    with av.open(str(path)) as container:
        frames = [out for frame in container.decode(audio=0) for out in resampler.resample(frame)]
    frames += resampler.resample(None)
    return np.concatenate([frame.to_ndarray().reshape(-1) for frame in frames]).astype(np.float32)


def onsets(samples: npt.NDArray[np.float32]) -> list[int]:
    """Sample indices where a 10 ms window first exceeds `ONSET_DBFS` after `ONSET_QUIET` s below it."""
    hop, window = MIC_RATE // 200, MIC_RATE // 100
    found, quiet_since = [], 0
    for start in range(0, len(samples) - window, hop):
        rms = float(np.sqrt(np.mean(np.square(samples[start : start + window], dtype=np.float64))))
        loud = 20 * np.log10(rms + 1e-12) > ONSET_DBFS
        if loud and start - quiet_since >= ONSET_QUIET * MIC_RATE:
            found.append(start)
        if loud:
            quiet_since = start + window
    return found


# The call.


@dataclass
class Reception:
    """What came back, stamped with the client clock at the network, before aiortc's jitter buffers."""

    packet_arrival: dict[tuple[str, int], float] = field(default_factory=dict)
    """(kind, media timestamp) -> arrival of the last packet carrying it. Media timestamps count from the first
    packet's RTP timestamp, as aiortc stamps decoded frames."""
    rtp_origin: dict[str, int] = field(default_factory=dict)
    video: list[tuple[int, float]] = field(default_factory=list)
    """(RTP timestamp, mouth openness) per decoded frame."""
    audio: list[tuple[int, npt.NDArray[np.float32]]] = field(default_factory=list)
    """(RTP timestamp, mono samples) per decoded frame."""


def tap_packets(receiver: RTCRtpReceiver, kind: str, reception: Reception, clock: MonotonicClock) -> None:
    """Stamp every RTP packet as it arrives: aiortc holds audio and video in jitter buffers before decoding."""
    handle: Callable[[RtpPacket, int], Awaitable[None]] = receiver._handle_rtp_packet

    async def stamped(packet: RtpPacket, arrival_time_ms: int) -> None:
        origin = reception.rtp_origin.setdefault(kind, packet.timestamp)
        reception.packet_arrival[(kind, (packet.timestamp - origin) % 2**32)] = clock.now()
        await handle(packet, arrival_time_ms)

    receiver._handle_rtp_packet = stamped  # type: ignore[method-assign]


@dataclass(frozen=True)
class CallRecord:
    reception: Reception
    speech_start: float
    """Client clock time of the first sample of the speech."""
    playout_delay: float
    """As the server's answer states it."""


async def call(base_url: str, speech: npt.NDArray[np.float32], probe: MouthProbe) -> CallRecord:
    """Speak `speech` to the server and record what comes back."""
    clock = MonotonicClock()
    reception = Reception()
    peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    microphone = SpeakingTrack(speech, clock)
    audio = peer.addTransceiver(microphone, direction="sendrecv")
    video = peer.addTransceiver("video", direction="recvonly")
    tap_packets(audio.receiver, "audio", reception, clock)
    tap_packets(video.receiver, "video", reception, clock)
    done = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def receive(track: MediaStreamTrack) -> None:
        try:
            while not done.is_set():
                frame = await track.recv()
                assert frame.pts is not None
                if isinstance(frame, av.VideoFrame):
                    image = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
                    reception.video.append((frame.pts, probe.openness(probe.crop(image))))
                elif isinstance(frame, av.AudioFrame):
                    reception.audio.append((frame.pts, frame.to_ndarray().reshape(-1, 2).mean(axis=1) / 32768))
        except MediaStreamError:
            return

    peer.on("track", lambda track: tasks.append(asyncio.create_task(receive(track))))
    await peer.setLocalDescription(await peer.createOffer())
    answer = await asyncio.to_thread(
        post_json, f"{base_url}/api/sessions", {"sdp": peer.localDescription.sdp, "type": "offer"}
    )
    await peer.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
    await microphone.finished.wait()
    done.set()
    await peer.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert microphone.start is not None
    return CallRecord(reception, microphone.start, float(answer["playout_delay"]))


def post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.load(response)
    return answer


# The numbers.


@dataclass(frozen=True)
class Measurement:
    onset_to_mouth: list[float]
    onset_to_echo: list[float]
    av_offset: list[float]
    missed: int
    open_threshold: float
    received_fps: float


def analyse(reception: Reception, speech_start: float, onset_times: list[float]) -> Measurement:
    video = [(reception.packet_arrival[("video", pts)], openness) for pts, openness in reception.video]
    first_onset = speech_start + onset_times[0]
    idle = [openness for arrival, openness in video if arrival < first_onset]
    threshold = max(MIN_OPEN, max(idle, default=0.0) + IDLE_MARGIN)
    echoed = echoed_onsets(reception)
    to_mouth, to_echo, offsets, missed = [], [], [], 0
    for onset in (speech_start + t for t in onset_times):
        mouth = next((t for t, o in video if onset <= t < onset + PAIRING_WINDOW and o > threshold), None)
        echo = next((t for t in echoed if onset <= t < onset + PAIRING_WINDOW), None)
        if mouth is None or echo is None:
            missed += 1
            continue
        to_mouth.append(mouth - onset)
        to_echo.append(echo - onset)
        offsets.append(mouth - echo)
    arrivals = [arrival for arrival, _ in video]
    fps = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    return Measurement(to_mouth, to_echo, offsets, missed, threshold, fps)


def echoed_onsets(reception: Reception) -> list[float]:
    """Arrival times of the onsets in the echoed voice: its frames in order, each sample stamped with its packet."""
    samples = np.concatenate([pcm for _, pcm in reception.audio]).astype(np.float32)
    starts = np.cumsum([0] + [len(pcm) for _, pcm in reception.audio])
    times = []
    for index in onsets(samples):
        frame = int(np.searchsorted(starts, index, side="right") - 1)
        arrival = reception.packet_arrival[("audio", reception.audio[frame][0])]
        times.append(arrival + (index - starts[frame]) / MIC_RATE)
    return times


WINDOW_RENDER = 'echolive_render_seconds_{}{{kind="window"}}'
METRIC_LINE = re.compile(r"^(echolive_\S+)\s+(\S+)$", re.MULTILINE)


def server_metrics(base_url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {match[1]: float(match[2]) for match in METRIC_LINE.finditer(text)}


def summary(values: list[float]) -> str:
    ms = sorted(1000 * value for value in values)
    if not ms:
        return "no samples"
    p90 = ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))]
    return f"median {statistics.median(ms):.0f} ms, p90 {p90:.0f} ms, min {ms[0]:.0f} ms, max {ms[-1]:.0f} ms"


# Running it.


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phrases", type=int, default=12)
    parser.add_argument("--fps", type=float, default=None)
    parser.add_argument("--playout-delay", type=float, default=None, help="seconds (default: the server's)")
    args = parser.parse_args()

    restrict_ice_host_addresses(("127.0.0.1",))
    with tempfile.TemporaryDirectory() as workdir:
        speech, onset_times = make_speech(args.phrases, Path(workdir))
        probe = MouthProbe.around(LiteRenderer().prepare_avatar(load_portrait(default_portrait_path())))
        serve_arguments = ["--fps", str(args.fps)] if args.fps is not None else []
        serve_arguments += ["--playout-delay", str(args.playout_delay)] if args.playout_delay is not None else []
        with child_server(Path(workdir), *serve_arguments) as server:
            record = asyncio.run(call(server.base_url, speech, probe))
            metrics = server_metrics(server.base_url)
    result = analyse(record.reception, record.speech_start, onset_times)
    report(args, result, metrics, record.playout_delay)


def report(args: argparse.Namespace, result: Measurement, metrics: dict[str, float], playout_delay: float) -> None:
    cpu_lines = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
    cpu = cpu_lines[0].split(":", 1)[1].strip() if cpu_lines else platform.processor()
    latency = metrics.get("echolive_end_to_end_latency_seconds_sum", 0.0) / max(
        metrics.get("echolive_end_to_end_latency_seconds_count", 0.0), 1.0
    )
    render = metrics.get(WINDOW_RENDER.format("sum"), 0.0) / max(metrics.get(WINDOW_RENDER.format("count"), 0.0), 1.0)
    print(f"machine: {cpu}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}")
    print(f"server: lite renderer, fps {args.fps or 'renderer default'}, playout delay {playout_delay * 1000:.0f} ms")
    print(f"phrases: {args.phrases}, measured {len(result.onset_to_mouth)}, missed {result.missed}")
    print(f"onset-to-mouth: {summary(result.onset_to_mouth)}")
    print(f"onset-to-echo: {summary(result.onset_to_echo)}")
    print(f"A/V offset of the echoed voice (+ = sound first): {summary(result.av_offset)}")
    print(f"open mouth: over {result.open_threshold:.3f} dark share; video received at {result.received_fps:.1f} fps")
    print(
        f"server metrics: {metrics.get('echolive_frames_sent_total', 0):.0f} frames sent, "
        f"{metrics.get('echolive_frames_dropped_total', 0):.0f} dropped, "
        f"{metrics.get('echolive_frames_repeated_total', 0):.0f} repeated; "
        f"audio arrival to frame sent {1000 * latency:.0f} ms mean; render {1000 * render:.1f} ms per window mean"
    )


if __name__ == "__main__":
    main()
