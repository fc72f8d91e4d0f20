"""The latency budget: how long after a moment of voice reaches the server its video frame goes out.

Every frame leaves at `origin + pts + playout_delay` (see `streaming.pacer`), so a session's latency is its playout
delay, and the delay must cover the slowest path from audio arriving to a frame being ready:

| part | what it waits for | lite | echomimic (live window) |
|---|---|---|---|
| jitter | audio later than this is taken as silence | 60 ms | 60 ms |
| gate | an onset is held, then back-dated; an idle frame waits for its VAD frame | 80 ms | 80 ms |
| window | the rest of a window's audio: `frames / fps` (steady window size) | 40 ms | 167 ms (4 frames) |
| look-ahead | audio after the window's last frame | 40 ms | 80 ms |
| render | the 95th percentile of the window render time measured on this machine | ~5 ms | measured |
| encode | handing the frame to the video encoder and the network | 20 ms | 20 ms |

The gate and the window overlap in time (the window fills while the onset is held), so the budget is
`jitter + max(gate, window + look-ahead) + render + encode`. For `lite` that is about 0.165 s. For EchoMimic at its
live window (4 new frames at 24 fps, 80 ms look-ahead) it is 0.327 s plus the render time, so the first speaking
frame goes out within 400 ms of the voice on a GPU that renders a window in under 73 ms.

The delay is fixed for a session's life, because the voice sent back alongside the video is delayed by the same
amount and must not stretch. So it is the steady window, not the first one, that sets it: every window's first
frame waits for the whole window's audio. The first window of an utterance is shorter all the same (EchoMimic: 2
frames), which leaves its render more slack after the onset hold, and its frames are the ones a viewer watches for.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LatencyBudget:
    """The parts of a session's playout delay, in seconds."""

    jitter: float
    gate: float
    window: float
    lookahead: float
    render: float
    encode: float

    @property
    def input_delay(self) -> float:
        """From a moment of audio coming round on the clock to every input of its frame being available."""
        return self.jitter + max(self.gate, self.window + self.lookahead)

    @property
    def total(self) -> float:
        return self.input_delay + self.render + self.encode

    def describe(self) -> str:
        return (
            f"{self.total * 1000:.0f} ms = jitter {self.jitter * 1000:.0f} + max(gate {self.gate * 1000:.0f}, "
            f"window {self.window * 1000:.0f} + look-ahead {self.lookahead * 1000:.0f}) + render "
            f"{self.render * 1000:.0f} + encode {self.encode * 1000:.0f}"
        )
