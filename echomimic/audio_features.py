"""Audio conditioning for EchoMimic: 16 kHz speech → log-mel → whisper states → a (50, 384) chunk per video frame.

The steps follow the official audio path so that features match it within float noise:

1. `log_mel_spectrogram`: power STFT (400-sample periodic Hann window, hop 160, reflect-padded and centred, last frame
   dropped), an 80-band Slaney mel filter bank, log10, a floor 8 decades below the loudest value, then (x + 4) / 4.
   The floor uses the maximum over the whole input, so features depend on the whole clip.
2. `AudioFeatureExtractor.encoder_embeddings`: the mel in 3000-frame (30 s) segments, each zero-padded to 3000 frames,
   through the whisper encoder; of each segment the tokens that cover real audio are kept (one token per 2 mel frames),
   giving [T, 5, 384] at 50 tokens per second.
3. `AudioFeatureExtractor.frame_chunks`: video frame i takes the 10 token rows around int(i·50/fps), clamped to the
   clip, flattened to (50, 384).
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from echomimic.acceleration.host_transfer import to_device
from echomimic.models.whisper_encoder import WhisperAudioEncoder

SAMPLE_RATE = 16_000
N_FFT = 400
HOP_LENGTH = 160
N_MELS = 80
SEGMENT_MEL_FRAMES = 3000
MEL_FRAMES_PER_TOKEN = 2
TOKENS_PER_SECOND = SAMPLE_RATE // HOP_LENGTH // MEL_FRAMES_PER_TOKEN  # 50
TOKENS_BEFORE_FRAME = 4
TOKENS_AFTER_FRAME = 5
DYNAMIC_RANGE_DECADES = 8.0

Waveform = npt.NDArray[np.float32] | torch.Tensor


# Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above (27 mels per factor 6.4).
SLANEY_HZ_PER_MEL = 200.0 / 3.0
SLANEY_LOG_START_HZ = 1000.0
SLANEY_LOG_START_MEL = SLANEY_LOG_START_HZ / SLANEY_HZ_PER_MEL
SLANEY_MELS_PER_LOG_UNIT = 27.0 / np.log(6.4)


def hz_to_slaney_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    linear = hz / SLANEY_HZ_PER_MEL
    octaves = np.log(np.maximum(hz, SLANEY_LOG_START_HZ) / SLANEY_LOG_START_HZ)
    logarithmic = SLANEY_LOG_START_MEL + octaves * SLANEY_MELS_PER_LOG_UNIT
    return np.where(hz >= SLANEY_LOG_START_HZ, logarithmic, linear)


def slaney_mel_to_hz(mels: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Inverse of `hz_to_slaney_mel`."""
    linear = mels * SLANEY_HZ_PER_MEL
    logarithmic = SLANEY_LOG_START_HZ * np.exp(
        (np.maximum(mels, SLANEY_LOG_START_MEL) - SLANEY_LOG_START_MEL) / SLANEY_MELS_PER_LOG_UNIT
    )
    return np.where(mels >= SLANEY_LOG_START_MEL, logarithmic, linear)


@functools.cache
def mel_filter_bank(
    sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS
) -> npt.NDArray[np.float32]:
    """Triangular mel filters [n_mels, n_fft/2 + 1] on the Slaney scale, each normalised to unit area (Slaney norm).

    This is the filter bank whisper ships as `mel_filters.npz` (librosa's default mel filters, 0 Hz to Nyquist).
    """
    fft_hz = np.arange(n_fft // 2 + 1, dtype=np.float64) * sample_rate / n_fft  # [bins]
    edges_mel = np.linspace(hz_to_slaney_mel(np.array(0.0)), hz_to_slaney_mel(np.array(sample_rate / 2)), n_mels + 2)
    edges_hz = slaney_mel_to_hz(edges_mel)  # [n_mels + 2]: lower edge, centre, upper edge of each band in turn
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]  # [n_mels, 1] each
    rising = (fft_hz[None, :] - lower) / (centre - lower)  # [n_mels, bins]
    falling = (upper - fft_hz[None, :]) / (upper - centre)
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    # librosa stores the triangles in float32 before scaling; rounding at the same point keeps the result bit-exact.
    area_normalisation = 2.0 / (upper - lower)
    return (triangles.astype(np.float32) * area_normalisation).astype(np.float32)


def log_mel_spectrogram(waveform: Waveform, device: torch.device | str | None = None) -> torch.Tensor:
    """Whisper's log-mel features of 16 kHz mono audio [samples] → [80, samples // 160], float32 on `device`."""
    log_power = log_mel_power(waveform, device)
    return normalise_log_mel(log_power, log_power.max())


def log_mel_power(waveform: Waveform, device: torch.device | str | None = None) -> torch.Tensor:
    """log10 of the mel band powers [80, samples // 160], before the floor and scaling of `log_mel_spectrogram`."""
    audio = torch.as_tensor(waveform, dtype=torch.float32)
    if device is not None:
        audio = to_device(audio, torch.device(device))
    if audio.ndim != 1:
        raise ValueError(f"waveform must be 1-D mono samples; got shape {tuple(audio.shape)}")
    if audio.shape[0] <= N_FFT // 2:
        raise ValueError(f"waveform must hold more than {N_FFT // 2} samples to be framed; got {audio.shape[0]}")
    window = torch.hann_window(N_FFT, device=audio.device)  # periodic
    spectrum = torch.stft(audio, N_FFT, HOP_LENGTH, window=window, center=True, pad_mode="reflect", return_complex=True)
    power = spectrum[:, :-1].abs() ** 2  # [bins, frames]; the last centred frame is dropped as whisper does
    return torch.clamp(_mel_filters_on(audio.device) @ power, min=1e-10).log10()  # [80, frames]


@functools.cache
def _mel_filters_on(device: torch.device) -> torch.Tensor:
    """`mel_filter_bank()` [80, bins] on `device`, copied there once rather than for every window."""
    return to_device(torch.from_numpy(mel_filter_bank()), device)


def normalise_log_mel(log_power: torch.Tensor, loudest: torch.Tensor | float) -> torch.Tensor:
    """Whisper's floor, 8 decades below `loudest` (a log10 power), then (x + 4) / 4."""
    floored = torch.maximum(log_power, torch.as_tensor(loudest, device=log_power.device) - DYNAMIC_RANGE_DECADES)
    return (floored + 4.0) / 4.0


def frame_count_for_tokens(num_tokens: int, fps: float) -> int:
    """How many video frames the official chunking yields for `num_tokens` encoder tokens.

    The official loop emits frame i and stops after the first i with int(i·(50/fps)) > num_tokens, so it runs
    a little past the audio (50 frames for 100 tokens at 24 fps).
    """
    _check_token_rate(num_tokens, fps)
    tokens_per_frame = TOKENS_PER_SECOND / fps
    frame = 0
    while int(frame * tokens_per_frame) <= num_tokens:
        frame += 1
    return frame + 1


def chunk_indices(num_tokens: int, fps: float, num_frames: int | None = None) -> torch.Tensor:
    """Token rows [frames, 10] (int64) that make up each video frame's audio chunk.

    Frame i is centred on token int(i·50/fps) and takes rows centre−4 … centre+5, clamped to [0, num_tokens − 1].
    `num_frames` defaults to `frame_count_for_tokens`.
    """
    _check_token_rate(num_tokens, fps)
    frames = frame_count_for_tokens(num_tokens, fps) if num_frames is None else num_frames
    if frames < 0:
        raise ValueError(f"num_frames must not be negative; got {frames}")
    centres = torch.tensor([int(i * TOKENS_PER_SECOND / fps) for i in range(frames)], dtype=torch.int64)  # [frames]
    offsets = torch.arange(-TOKENS_BEFORE_FRAME, TOKENS_AFTER_FRAME + 1)  # [10]
    return (centres[:, None] + offsets[None, :]).clamp(0, num_tokens - 1)  # [frames, 10]


def _check_token_rate(num_tokens: int, fps: float) -> None:
    if num_tokens <= 0:
        raise ValueError(
            f"no audio tokens to chunk; the audio must last at least {MEL_FRAMES_PER_TOKEN * HOP_LENGTH} samples"
        )
    if fps <= 0:
        raise ValueError(f"fps must be positive; got {fps}")


class AudioFeatureExtractor:
    """Turns 16 kHz speech into the per-frame audio conditioning of the denoising UNet."""

    def __init__(self, encoder: WhisperAudioEncoder) -> None:
        self.encoder = encoder

    @torch.no_grad()
    def encoder_embeddings(self, waveform: Waveform) -> torch.Tensor:
        """Stacked whisper states [T, 5, 384] at 50 tokens per second, on the encoder's device and dtype."""
        mel = log_mel_spectrogram(waveform, device=self.encoder.device)  # [80, N]
        kept = []
        for segment in torch.split(mel, SEGMENT_MEL_FRAMES, dim=1):  # [80, n ≤ 3000] each
            padded = F.pad(segment, (0, SEGMENT_MEL_FRAMES - segment.shape[1]))  # [80, 3000]
            states = self.encoder(padded[None])[0]  # [1500, 5, 384]
            kept.append(states[: segment.shape[1] // MEL_FRAMES_PER_TOKEN])
        return torch.cat(kept)  # [T, 5, 384]

    @staticmethod
    def frame_chunks(embeddings: torch.Tensor, fps: float, num_frames: int | None = None) -> torch.Tensor:
        """Per-frame audio chunks [frames, 50, 384] from stacked states [T, 5, 384].

        `num_frames` picks exactly the frames a video needs; by default the official frame count is used.
        """
        indices = chunk_indices(embeddings.shape[0], fps, num_frames).to(embeddings.device)  # [frames, 10]
        return embeddings[indices].flatten(1, 2)  # [frames, 10, 5, 384] → [frames, 50, 384]

    def features_for_video(self, waveform: Waveform, fps: float, num_frames: int | None = None) -> torch.Tensor:
        """Audio chunks [frames, 50, 384] for a video at `fps` of the speech in `waveform`."""
        return self.frame_chunks(self.encoder_embeddings(waveform), fps, num_frames)
