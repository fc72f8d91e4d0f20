"""Soak: N sessions at once for M minutes on loopback, WebRTC callers and bots mixed, each hanging up after a while
and replaced at once by a new one; what the server delivers, and what it holds, over time.

    python -m bench.soak [--sessions 4] [--minutes 10] [--churn-seconds 60] [--interval 30] [--seed 0] [--json]

Starts `echolive serve` (lite renderer) in a child process. Sessions take turns by transport: a WebRTC caller
(an aiortc peer whose microphone speaks espeak-ng phrases in real time, the server echoing the voice back) and a
bot (the WebSocket API, sending the same phrases as 24 kHz PCM in real time and receiving frames and voice). Each
session lives a random time between 0.5 and 1.5 times `--churn-seconds` (drawn from `--seed`), then hangs up.

Per session, on the client's clock at arrival (WebRTC: the decoded frame; bot: the message):

- delivered: video frames received; skipped: frame slots between the first and last frame that never came;
- late: frames that arrived more than `LATE_TOLERANCE` after their timestamp allows, counted from the session's
  first frame (arrival - first arrival > pts - first pts + tolerance);
- A/V offset drift: the offset between the video and the voice at arrival (median of arrival - pts per stream
  over `OFFSET_WINDOW` seconds, video minus voice), in the session's last window minus its first. WebRTC
  receivers number each stream from its own first packet, so only the change is measured there;
- stalls: stretches longer than `STALL` without a frame while the session is live (from the start, allowing
  `FIRST_FRAME_WAIT` for the first frame, to the hang-up).

Every second it reads the server process's open descriptors (/proc/PID/fd), threads and resident memory
(/proc/PID/status); every `--interval` seconds it prints a row. At the end it judges, on the samples after the
warm-up (the first `WARM_UP_SHARE` of the run), whether each resource leaks (grows with the sessions ended, see
`bench.soak_trend`) and whether memory stayed flat (last quarter against the first, within `RSS_FLAT`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import random
import statistics
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bench.child_server import child_server
from bench.latency import make_speech, post_json, server_metrics
from bench.lite_fps import cpu_model
from bench.soak_trend import growth
from server.bot_client import AudioMessage, BotRefused, VideoMessage, connect_bot
from server.bot_protocol import CloseCode
from server.ice_addresses import restrict_ice_host_addresses
from server.speaking_track import MIC_RATE, SpeakingTrack

REFUSED_RETRY = 10.0
"""Seconds a slot waits after a refusal that names no `Retry-After` (a bot's close code 4503)."""
LATE_TOLERANCE = 0.2
STALL = 2.0
FIRST_FRAME_WAIT = 10.0
"""Seconds a new session may take to negotiate, connect and deliver its first frame before it counts as stalled."""
OFFSET_WINDOW = 5.0
SAMPLE_PERIOD = 1.0
WARM_UP_SHARE = 0.2
RSS_FLAT = 0.05
LEAK_LIMITS = {"fds": 0.25, "threads": 0.25, "rss_mib": 2.0}
"""Growth per ended session that counts as a leak: a quarter of a descriptor or thread (one kept by every fourth
session), 2 MiB of memory. Noise moves the Theil-Sen slope far less; see `bench.soak_trend`."""
BOT_RATE = 24_000
BOT_CHUNK = 0.1
"""Seconds of audio per message a bot sends, one every `BOT_CHUNK` seconds."""
PHRASES = 4
SERVER_COUNTERS = tuple(
    f"echolive_{name}_total" for name in ("sessions_ended", "frames_sent", "frames_dropped", "frames_repeated")
)
"""From the server's /metrics at the end: why its sessions ended, and its frames sent, dropped and repeated."""


# One session's record.


@dataclass
class SessionRecord:
    number: int
    transport: str
    """webrtc or bot."""
    started: float
    hung_up: float | None = None
    """When the client began to hang up; frames after it are not judged."""
    video: list[tuple[float, float]] = field(default_factory=list)
    """(arrival, pts in seconds) of each frame."""
    audio: list[tuple[float, float]] = field(default_factory=list)
    """(arrival, pts in seconds) of each piece of voice."""
    late: list[bool] = field(default_factory=list)
    error: str | None = None
    refused: bool = False
    """The server had no room for it (503, or a bot's 4503): admission at work, not a failure."""

    def add_frame(self, arrival: float, pts: float) -> None:
        if self.video:
            first_arrival, first_pts = self.video[0]
            self.late.append(arrival - first_arrival > pts - first_pts + LATE_TOLERANCE)
        else:
            self.late.append(False)
        self.video.append((arrival, pts))

    def stalls(self, now: float) -> list[float]:
        """Lengths of the stretches without a frame that count as stalls, up to the hang-up (or `now`)."""
        until = self.hung_up if self.hung_up is not None else now
        arrivals = [arrival for arrival, _ in self.video if arrival <= until]
        if not arrivals:
            return [until - self.started] if until - self.started > FIRST_FRAME_WAIT else []
        found = [arrivals[0] - self.started] if arrivals[0] - self.started > FIRST_FRAME_WAIT else []
        found += [
            later - earlier for earlier, later in itertools.pairwise([*arrivals, until]) if later - earlier > STALL
        ]
        return found

    def skipped(self) -> int:
        """Frame slots between the first and the last frame that no frame filled."""
        if len(self.video) < 2:
            return 0
        pts = [stamp for _, stamp in self.video]
        period = statistics.median(later - earlier for earlier, later in itertools.pairwise(pts))
        return max(0, round((pts[-1] - pts[0]) / period) + 1 - len(pts)) if period > 0 else 0

    def drift(self) -> float | None:
        """A/V offset in the last window minus the first; None for a session too short to have both."""
        if not self.video or not self.audio:
            return None
        start = max(self.video[0][0], self.audio[0][0])
        end = min(self.video[-1][0], self.audio[-1][0])
        if end - start < 2 * OFFSET_WINDOW:
            return None
        first = _offset(self.video, self.audio, start, start + OFFSET_WINDOW)
        last = _offset(self.video, self.audio, end - OFFSET_WINDOW, end)
        return last - first


def _offset(video: list[tuple[float, float]], audio: list[tuple[float, float]], start: float, end: float) -> float:
    def lag(stream: list[tuple[float, float]]) -> float:
        return statistics.median(arrival - pts for arrival, pts in stream if start <= arrival < end)

    return lag(video) - lag(audio)


# The sessions.


async def webrtc_session(base_url: str, speech: npt.NDArray[np.float32], record: SessionRecord, life: float) -> None:
    loop = asyncio.get_running_loop()
    peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    peer.addTransceiver(SpeakingTrack(speech), direction="sendrecv")
    peer.addTransceiver("video", direction="recvonly")
    receivers: list[asyncio.Task[None]] = []
    ended_by_server = asyncio.Event()

    async def receive(track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                assert frame.pts is not None and frame.time_base is not None
                pts = float(frame.pts * frame.time_base)
                if isinstance(frame, av.VideoFrame):
                    record.add_frame(loop.time(), pts)
                else:
                    record.audio.append((loop.time(), pts))
        except MediaStreamError:
            ended_by_server.set()

    def on_connection_state() -> None:
        if peer.connectionState in ("failed", "closed"):
            ended_by_server.set()

    peer.on("track", lambda track: receivers.append(asyncio.create_task(receive(track))))
    peer.on("connectionstatechange", on_connection_state)
    try:
        await peer.setLocalDescription(await peer.createOffer())
        offer = {"sdp": peer.localDescription.sdp, "type": "offer"}
        answer = await asyncio.to_thread(post_json, f"{base_url}/api/sessions", offer)
        await peer.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(record.started + life):
                await ended_by_server.wait()
        record.hung_up = loop.time()
        # Checked before hanging up: the hang-up itself ends the track.
        if ended_by_server.is_set() or not await asyncio.to_thread(
            hang_up, f"{base_url}/api/sessions/{answer['session_id']}"
        ):
            raise RuntimeError(f"the server ended the session {record.hung_up - record.started:.0f} s in")
    finally:
        await peer.close()
        for task in receivers:
            task.cancel()
        await asyncio.gather(*receivers, return_exceptions=True)


def refusal_wait(error: BaseException) -> float | None:
    """Seconds to wait before trying again when the server refused a session for want of room; None when the
    failure was anything else."""
    if isinstance(error, urllib.error.HTTPError) and error.code == 503:
        return float(error.headers.get("Retry-After") or REFUSED_RETRY)
    if isinstance(error, BotRefused) and error.close_code == CloseCode.SERVER_FULL:
        return REFUSED_RETRY
    return None


def hang_up(session_url: str) -> bool:
    """Hang the session up; False if the server had ended it already."""
    try:
        with urllib.request.urlopen(urllib.request.Request(session_url, method="DELETE"), timeout=30):
            return True
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return False
        raise


async def bot_session(ws_url: str, pcm: npt.NDArray[np.int16], record: SessionRecord, life: float) -> None:
    loop = asyncio.get_running_loop()
    async with connect_bot(ws_url, sample_rate=BOT_RATE) as bot:

        async def speak() -> None:
            """Like a microphone: `BOT_CHUNK` seconds of the phrases, over and over, each when it is due."""
            step = round(BOT_CHUNK * BOT_RATE)
            for number in itertools.count():
                await asyncio.sleep(record.started + number * BOT_CHUNK - loop.time())
                await bot.send_audio(np.take(pcm, range(number * step, (number + 1) * step), mode="wrap"))

        speaking = asyncio.create_task(speak())
        try:
            async with asyncio.timeout_at(record.started + life):
                async for message in bot:
                    if isinstance(message, VideoMessage):
                        record.add_frame(loop.time(), message.pts)
                    elif isinstance(message, AudioMessage):
                        record.audio.append((loop.time(), message.pts))
        except TimeoutError:
            record.hung_up = loop.time()
        finally:
            speaking.cancel()
            await asyncio.gather(speaking, return_exceptions=True)
    if record.hung_up is None:
        raise RuntimeError(f"the server closed the bot's connection ({bot.close_code} {bot.close_reason})")


# The run.


@dataclass(frozen=True)
class Sample:
    at: float
    """Seconds since the run started."""
    ended: int
    """Sessions ended so far."""
    fds: int
    threads: int
    rss_mib: float


def read_process(pid: int) -> tuple[int, int, float]:
    """Open descriptors, threads and resident memory (MiB) of process `pid`."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return len(os.listdir(f"/proc/{pid}/fd")), int(status["Threads"]), int(status["VmRSS"].split()[0]) / 1024


@dataclass(frozen=True)
class Row:
    at: float
    live: int
    ended: int
    frames: int
    """Frames delivered in the interval, all sessions together."""
    late: int
    stalls: int
    """Stalls so far."""
    fds: int
    threads: int
    rss_mib: float
    load: float
    """The machine's one-minute load average."""


@dataclass
class Soak:
    base_url: str
    ws_url: str
    server_pid: int
    sessions: int
    duration: float
    churn: float
    interval: float
    seed: int
    speech: npt.NDArray[np.float32]
    print_row: Callable[[Row], None]
    records: list[SessionRecord] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._origin = loop.time()
        self._numbers = itertools.count()
        bot_pcm = np.round(np.clip(self.speech[:: MIC_RATE // BOT_RATE], -1, 1) * 32767).astype(np.int16)
        slots = [asyncio.create_task(self._keep_slot(slot, bot_pcm)) for slot in range(self.sessions)]
        try:
            await self._watch()
        finally:
            await asyncio.gather(*slots)

    async def _keep_slot(self, slot: int, bot_pcm: npt.NDArray[np.int16]) -> None:
        """One session after another until the run ends: each lives its drawn time, then the next starts."""
        loop = asyncio.get_running_loop()
        draw = random.Random(f"{self.seed}-{slot}")
        end = self._origin + self.duration
        while end - loop.time() > STALL:
            life = min(draw.uniform(0.5, 1.5) * self.churn, end - loop.time())
            number = next(self._numbers)
            record = SessionRecord(number, "webrtc" if number % 2 == 0 else "bot", loop.time())
            self.records.append(record)
            try:
                if record.transport == "webrtc":
                    await webrtc_session(self.base_url, self._long_speech(life), record, life)
                else:
                    await bot_session(self.ws_url, bot_pcm, record, life)
            except Exception as error:
                record.error = f"{type(error).__name__}: {error}"
                retry_after = refusal_wait(error)
                if retry_after is not None:
                    record.refused = True
                    record.hung_up = loop.time()
                    await asyncio.sleep(min(retry_after, max(0.0, end - loop.time())))
            if record.hung_up is None:
                record.hung_up = loop.time()

    def _long_speech(self, life: float) -> npt.NDArray[np.float32]:
        """The phrases, repeated to outlast `life`: the microphone falls silent after its recording."""
        return np.tile(self.speech, int(life * MIC_RATE / len(self.speech)) + 2)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        next_row = self.interval
        for number in itertools.count(1):
            await asyncio.sleep(self._origin + number * SAMPLE_PERIOD - loop.time())
            now = loop.time()
            fds, threads, rss = read_process(self.server_pid)
            ended = sum(record.hung_up is not None and not record.refused for record in self.records)
            self.samples.append(Sample(now - self._origin, ended, fds, threads, rss))
            if now - self._origin >= next_row - 1e-6:
                self._add_row(now, next_row)
                next_row += self.interval
            if now - self._origin >= self.duration:
                return

    def _add_row(self, now: float, at: float) -> None:
        since = self._origin + at - self.interval
        frames = late = 0
        for record in self.records:
            for (arrival, _), was_late in zip(record.video, record.late, strict=True):
                if since <= arrival < now:
                    frames += 1
                    late += was_late
        sample = self.samples[-1]
        row = Row(
            at=round(at),
            live=sum(record.hung_up is None for record in self.records),
            ended=sample.ended,
            frames=frames,
            late=late,
            stalls=sum(len(record.stalls(now)) for record in self.records),
            fds=sample.fds,
            threads=sample.threads,
            rss_mib=round(sample.rss_mib, 1),
            load=round(os.getloadavg()[0], 2),
        )
        self.rows.append(row)
        self.print_row(row)


# The report.


@dataclass(frozen=True)
class SessionReport:
    number: int
    transport: str
    lived: float
    frames: int
    late: int
    skipped: int
    longest_gap: float
    stalls: int
    drift_ms: float | None
    error: str | None


def session_report(record: SessionRecord) -> SessionReport:
    assert record.hung_up is not None
    arrivals = [record.started] + [arrival for arrival, _ in record.video if arrival <= record.hung_up]
    gaps = [later - earlier for earlier, later in itertools.pairwise([*arrivals, record.hung_up])]
    drift = record.drift()
    return SessionReport(
        number=record.number,
        transport=record.transport,
        lived=round(record.hung_up - record.started, 1),
        frames=len(record.video),
        late=sum(record.late),
        skipped=record.skipped(),
        longest_gap=round(max(gaps), 3),
        stalls=len(record.stalls(record.hung_up)),
        drift_ms=None if drift is None else round(1000 * drift, 1),
        error=record.error,
    )


def judge(samples: list[Sample], duration: float) -> dict[str, Any]:
    """Leak and flatness verdicts on the samples after the warm-up."""
    settled = [sample for sample in samples if sample.at >= WARM_UP_SHARE * duration]
    verdicts: dict[str, Any] = {"warm_up_seconds": round(WARM_UP_SHARE * duration, 1), "samples": len(settled)}
    for resource, limit in LEAK_LIMITS.items():
        trend = growth([sample.ended for sample in settled], [getattr(sample, resource) for sample in settled])
        verdicts[resource] = {
            "per_session": round(trend.per_session, 3),
            "limit_per_session": limit,
            "first_quarter": trend.first_quarter,
            "last_quarter": trend.last_quarter,
            "change": round(trend.change, 4),
            "leaks": trend.leaks(limit),
            "flat": trend.flat(RSS_FLAT),
        }
    return verdicts


def summarise(soak: Soak, metrics: dict[str, float]) -> dict[str, Any]:
    sessions = [session_report(record) for record in soak.records if not record.refused]
    refused = [record for record in soak.records if record.refused]
    drifts = [abs(report.drift_ms) for report in sessions if report.drift_ms is not None]
    first, last = soak.samples[0], soak.samples[-1]
    return {
        "machine": f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}",
        "sessions_at_once": soak.sessions,
        "minutes": soak.duration / 60,
        "churn_seconds": soak.churn,
        "seed": soak.seed,
        "late_tolerance": LATE_TOLERANCE,
        "stall_seconds": STALL,
        "sessions_run": len(sessions),
        "sessions_refused": len(refused),
        "refusals": sorted({record.error or "" for record in refused}),
        "by_transport": {kind: sum(s.transport == kind for s in sessions) for kind in ("webrtc", "bot")},
        "frames": sum(report.frames for report in sessions),
        "late": sum(report.late for report in sessions),
        "skipped": sum(report.skipped for report in sessions),
        "stalls": sum(report.stalls for report in sessions),
        "errors": [f"session {report.number}: {report.error}" for report in sessions if report.error],
        "max_abs_drift_ms": max(drifts, default=None),
        "first_sample": asdict(first),
        "last_sample": asdict(last),
        "verdicts": judge(soak.samples, soak.duration),
        "server": {name: value for name, value in metrics.items() if name.startswith(SERVER_COUNTERS)},
        "rows": [asdict(row) for row in soak.rows],
        "session_reports": [asdict(report) for report in sessions],
    }


def print_summary(summary: dict[str, Any]) -> None:
    print(f"machine: {summary['machine']}; load average at the end {os.getloadavg()}")
    print(
        f"{summary['sessions_run']} sessions ({summary['by_transport']}), {summary['sessions_at_once']} at once, "
        f"{summary['minutes']:.1f} min, churn around {summary['churn_seconds']:.0f} s, seed {summary['seed']}"
    )
    if summary["sessions_refused"]:
        print(f"refused (no room; retried after Retry-After): {summary['sessions_refused']}")
        for refusal in summary["refusals"]:
            print(f"  {refusal[:300]}")
    print(
        f"frames delivered {summary['frames']}, late (> {1000 * LATE_TOLERANCE:.0f} ms) {summary['late']}, "
        f"slots skipped {summary['skipped']}, stalls (> {STALL:.0f} s) {summary['stalls']}, "
        f"max |A/V drift| {summary['max_abs_drift_ms']} ms"
    )
    for report in summary["session_reports"]:
        print("  " + ", ".join(f"{key} {value}" for key, value in report.items() if value is not None))
    for error in summary["errors"]:
        print(f"error: {error}")
    print("server: " + ", ".join(f"{name} {value:.0f}" for name, value in summary["server"].items()))
    first, last = summary["first_sample"], summary["last_sample"]
    print(
        f"server at {first['at']:.0f} s: {first['fds']} fds, {first['threads']} threads, {first['rss_mib']:.1f} MiB; "
        f"at {last['at']:.0f} s: {last['fds']} fds, {last['threads']} threads, {last['rss_mib']:.1f} MiB"
    )
    verdicts = summary["verdicts"]
    print(f"after the warm-up ({verdicts['warm_up_seconds']} s, {verdicts['samples']} samples):")
    for resource in LEAK_LIMITS:
        verdict = verdicts[resource]
        print(
            f"  {resource}: {verdict['per_session']:+.3f} per ended session (leak above {verdict['limit_per_session']}"
            f"): {'LEAKS' if verdict['leaks'] else 'no leak'}; first quarter {verdict['first_quarter']:.1f}, "
            f"last {verdict['last_quarter']:.1f} ({100 * verdict['change']:+.1f}%)"
        )
    print(f"  memory flat within {100 * RSS_FLAT:.0f}%: {'yes' if verdicts['rss_mib']['flat'] else 'NO'}")


def print_row(row: Row) -> None:
    print(
        f"{row.at:5.0f} s  live {row.live}  ended {row.ended:3d}  frames {row.frames:5d}  late {row.late:4d}  "
        f"stalls {row.stalls}  fds {row.fds}  threads {row.threads}  rss {row.rss_mib:.1f} MiB  load {row.load}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=4, help="sessions at once")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--churn-seconds", type=float, default=60.0, help="a session's mean life")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds per printed row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=None, help="frame size (default: the server's)")
    parser.add_argument("--json", action="store_true", help="print the rows and the summary as JSON, nothing else")
    args = parser.parse_args(argv)
    restrict_ice_host_addresses(("127.0.0.1",))
    serve_arguments = ["--renderer", "lite", "--max-sessions", str(2 * args.sessions)]
    serve_arguments += ["--size", str(args.size)] if args.size is not None else []
    with tempfile.TemporaryDirectory() as workdir:
        speech, _ = make_speech(PHRASES, Path(workdir))
        with child_server(Path(workdir), *serve_arguments) as server:
            soak = Soak(
                server.base_url,
                server.ws_url,
                server.pid,
                args.sessions,
                60 * args.minutes,
                args.churn_seconds,
                args.interval,
                args.seed,
                speech,
                (lambda row: None) if args.json else print_row,
            )
            asyncio.run(soak.run())
            metrics = server_metrics(server.base_url)
    summary = summarise(soak, metrics)
    if args.json:
        print(json.dumps(summary))
    else:
        print_summary(summary)


if __name__ == "__main__":
    main()
