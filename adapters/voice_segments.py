"""Which of the audio a bot session sends back is the bot's own voice, and where each utterance ends in it.

The server returns, with every frame, the audio that plays with it: the bot's samples, unchanged, where its voice
landed on the session's timeline, and zeros everywhere else. Voice agents need more than that: a video service
plays the voice only while the bot speaks, and reports each utterance as played out once its last sample has
played (Pipecat's `TTSStoppedFrame`, LiveKit's `AudioSegmentEnd`).

So every sample the bot sends is made non-zero (`outgoing`: digital silence goes out one step above zero,
−90 dBFS, which nobody hears); in what comes back a non-zero sample is then voice and a zero is the server's
silence, exactly. An utterance starts at its first voice sample and ends at the sample that completes the count
it was sent with; what lies between, silence the server put in where the bot fell behind real time included,
belongs to it. Where the server skipped frame slots (it fell behind: their voice never comes), the caller says
how many samples were skipped, and silence of that length takes the voice's place, so what is played keeps the
frames' timing and the utterance its length; where the skipped slots held its first samples (before any came
back), the silence goes at its end, once its voice stops short by no more than was skipped. An utterance that
stops coming back part way for any other reason (the server dropped its samples) is ended after `quiet_limit`
seconds without voice, so its end is always reported.

`clear()` (barge-in) forgets every utterance at once; until the server has confirmed the interrupt
(`confirm_clear()`), the voice still on its way is old and is ignored.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Pcm16 = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class Voice:
    """Part of a returned frame's audio that belongs to an utterance."""

    pcm: Pcm16


@dataclass(frozen=True, slots=True)
class SegmentEnd:
    """An utterance has played out."""

    played: float
    """Seconds of its audio that came back."""
    complete: bool
    """False when some of its voice never came back (skipped or dropped by the server, or the session ended)."""


Returned = Voice | SegmentEnd


@dataclass(slots=True)
class _Utterance:
    sent: int = 0
    """Samples sent so far."""
    heard: int = 0
    """Of those, samples that came back."""
    lost: int = 0
    """Of those, samples in frame slots the server skipped."""
    played: int = 0
    """Samples handed on to play, silence within the utterance included."""
    ended: bool = False
    """The bot said it is complete (a flush)."""
    started: bool = False
    """Its first voice sample has come back."""
    quiet: int = 0
    """Samples without voice since the bot ended it or since its last voice sample, whichever is later."""
    skipped_before_start: int = 0
    """Samples of slots the server skipped before its first voice sample came back: its start may be in them."""

    @property
    def missing(self) -> int:
        """Samples sent that have neither come back nor been skipped."""
        return self.sent - self.heard - self.lost


def mono_pcm(data: bytes, channels: int) -> Pcm16:
    """Interleaved PCM16 as mono: the channels' mean."""
    samples = np.frombuffer(data, dtype="<i2")
    if channels == 1:
        return samples.astype(np.int16)
    mixed: Pcm16 = samples.reshape(-1, channels).mean(axis=1).round().astype(np.int16)
    return mixed


def audible_pcm(pcm: Pcm16) -> Pcm16:
    """`pcm` with every zero sample raised by one step, so that it cannot be mistaken for the server's silence."""
    return np.where(pcm == 0, np.int16(1), pcm).astype(np.int16)


class VoiceSegments:
    def __init__(self, sample_rate: int, quiet_limit: float) -> None:
        self.sample_rate = sample_rate
        self._quiet_limit = round(quiet_limit * sample_rate)
        self._utterances: deque[_Utterance] = deque()
        self._unconfirmed_clears = 0

    @property
    def pending(self) -> int:
        """Utterances sent whose end has not been reported."""
        return len(self._utterances)

    @property
    def queued(self) -> float:
        """Seconds of voice sent that have not come back yet."""
        return sum(utterance.missing for utterance in self._utterances) / self.sample_rate

    @property
    def clearing(self) -> bool:
        """A clear is waiting for the server's confirmation: what comes back until then is old."""
        return self._unconfirmed_clears > 0

    def outgoing(self, pcm: Pcm16) -> Pcm16:
        """Count `pcm` into the current utterance (a new one after an end); returns the samples to send."""
        if not self._utterances or self._utterances[-1].ended:
            self._utterances.append(_Utterance())
        self._utterances[-1].sent += len(pcm)
        return audible_pcm(pcm)

    def end_utterance(self) -> None:
        """The current utterance is complete; one ended with nothing sent is reported at the next frame."""
        if not self._utterances or self._utterances[-1].ended:
            self._utterances.append(_Utterance())
        self._utterances[-1].ended = True

    def clear(self) -> None:
        """Barge-in: every utterance is dropped, none reports an end; voice coming back is old until confirmed."""
        self._utterances.clear()
        self._unconfirmed_clears += 1

    def confirm_clear(self) -> None:
        """The server has dropped what it had queued: voice from here on is new."""
        self._unconfirmed_clears = max(0, self._unconfirmed_clears - 1)

    def abandon(self) -> SegmentEnd:
        """The end of the oldest pending utterance, reported as it stands: the session is gone."""
        utterance = self._utterances.popleft()
        return SegmentEnd(utterance.played / self.sample_rate, complete=False)

    def returned(self, pcm: Pcm16, skipped: int = 0) -> list[Returned]:
        """Split one returned frame's audio, which comes `skipped` samples after the end of the previous one: the
        voice to play and the ends of utterances, in order."""
        if self._unconfirmed_clears:
            return []
        out: list[Returned] = []
        if skipped:
            self._skip(skipped, out)
        voiced = pcm != 0
        position = 0
        while self._utterances:
            utterance = self._utterances[0]
            if utterance.ended and (not utterance.missing or utterance.quiet > self._quiet_limit):
                self._utterances.popleft()
                complete = utterance.heard == utterance.sent
                out.append(SegmentEnd(utterance.played / self.sample_rate, complete))
                continue
            if position == len(pcm):
                break
            if not utterance.started:
                first = position + int(np.argmax(voiced[position:]))
                if not voiced[first]:
                    self._count_quiet(utterance, len(pcm) - position)
                    break
                utterance.started = True
                position = first
            end = self._utterance_end(utterance, voiced, position)
            heard = int(np.count_nonzero(voiced[position:end]))
            voice_end = position + _last_voiced(voiced[position:end])
            unheard = utterance.missing - heard
            if utterance.ended and voice_end < end and 0 < unheard <= utterance.skipped_before_start:
                # The voice stopped short by no more than was skipped before it was first heard: that is where
                # the rest went. Its silence goes at the end, so the utterance keeps its length.
                utterance.heard += heard
                utterance.lost += unheard
                utterance.played += voice_end - position + unheard
                out.append(Voice(np.concatenate([pcm[position:voice_end], np.zeros(unheard, dtype=np.int16)])))
                position = voice_end
                continue
            if heard:
                utterance.quiet = 0
            self._count_quiet(utterance, end - voice_end)
            utterance.heard += heard
            utterance.played += end - position
            out.append(Voice(pcm[position:end]))
            position = end
        return out

    def _skip(self, samples: int, out: list[Returned]) -> None:
        """Silence for the voice the server skipped, in the utterance playing. Before its first voice sample
        has come back it cannot tell whether any was skipped: that is noted, and settled when its voice stops."""
        utterance = self._utterances[0] if self._utterances else None
        if utterance is None or (utterance.ended and not utterance.missing):
            return
        if not utterance.started:
            utterance.skipped_before_start += samples
            return
        if utterance.missing:
            filled = min(samples, utterance.missing)
            utterance.lost += filled
        else:  # a pause in an utterance the bot has not ended: all of it is silence
            filled = samples
        utterance.played += filled
        out.append(Voice(np.zeros(filled, dtype=np.int16)))

    def _utterance_end(self, utterance: _Utterance, voiced: npt.NDArray[np.bool_], position: int) -> int:
        """Where in this frame the utterance's last voice sample is, or the frame's end if it goes on."""
        missing = utterance.missing
        counted = np.cumsum(voiced[position:])
        if missing == 0 or counted[-1] < missing:
            return len(voiced)
        return position + int(np.searchsorted(counted, missing)) + 1

    def _count_quiet(self, utterance: _Utterance, samples: int) -> None:
        if utterance.ended:
            utterance.quiet += samples


def _last_voiced(voiced: npt.NDArray[np.bool_]) -> int:
    """One past the last voiced sample (0 when none is)."""
    indices = np.flatnonzero(voiced)
    return int(indices[-1]) + 1 if len(indices) else 0
