"""Audio features against the official run (fixture d): mel filters, log-mel, embeddings, chunks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from echomimic.audio_features import (
    AudioFeatureExtractor,
    chunk_indices,
    frame_count_for_tokens,
    log_mel_spectrogram,
    mel_filter_bank,
)
from echomimic.models.whisper_encoder import WhisperAudioEncoder
from tests.echomimic.conftest import tiny_tensors

MEL_ATOL = 1e-5
FEATURES_ATOL = 5e-5


@pytest.fixture(scope="module")
def fixture_d(conformance_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(conformance_dir / "tiny/d_whisper.safetensors")


@pytest.fixture(scope="module")
def extractor(conformance_dir: Path) -> AudioFeatureExtractor:
    weights = tiny_tensors(conformance_dir, "weights/whisper_tiny_encoder.safetensors")
    encoder = WhisperAudioEncoder()
    encoder.load_state_dict({key.removeprefix("encoder."): value for key, value in weights.items()})
    return AudioFeatureExtractor(encoder.eval())


def test_mel_filters_match_the_official_matrix(fixture_d: dict[str, torch.Tensor]) -> None:
    filters = torch.from_numpy(mel_filter_bank())
    assert filters.shape == (80, 201)
    torch.testing.assert_close(filters, fixture_d["mel_filters"], atol=MEL_ATOL, rtol=0)


def test_log_mel_matches_official(fixture_d: dict[str, torch.Tensor]) -> None:
    mel = log_mel_spectrogram(fixture_d["waveform"].numpy())
    assert mel.shape == (80, 200)
    torch.testing.assert_close(mel, fixture_d["mel"], atol=MEL_ATOL, rtol=0)


def test_frames_offset_by_half_a_hop_fail_the_comparison(fixture_d: dict[str, torch.Tensor]) -> None:
    shifted = torch.cat([torch.zeros(80), fixture_d["waveform"][:-80]])
    assert (log_mel_spectrogram(shifted) - fixture_d["mel"]).abs().max() > 100 * MEL_ATOL


def test_log_mel_rejects_unusable_input() -> None:
    with pytest.raises(ValueError, match="1-D mono"):
        log_mel_spectrogram(np.zeros((2, 16_000), dtype=np.float32))
    with pytest.raises(ValueError, match="more than 200 samples"):
        log_mel_spectrogram(np.zeros(200, dtype=np.float32))


def test_encoder_embeddings_match_official(
    extractor: AudioFeatureExtractor, fixture_d: dict[str, torch.Tensor]
) -> None:
    embeddings = extractor.encoder_embeddings(fixture_d["waveform"].numpy())
    assert embeddings.shape == (100, 5, 384)
    torch.testing.assert_close(embeddings, fixture_d["encoder_embeddings"], atol=FEATURES_ATOL, rtol=0)


def test_chunk_indices_match_official(fixture_d: dict[str, torch.Tensor]) -> None:
    assert frame_count_for_tokens(100, fps=24) == 50
    assert torch.equal(chunk_indices(100, fps=24), fixture_d["chunk_indices"])


def test_chunks_of_official_embeddings_match_exactly(fixture_d: dict[str, torch.Tensor]) -> None:
    chunks = AudioFeatureExtractor.frame_chunks(fixture_d["encoder_embeddings"], fps=24)
    assert torch.equal(chunks, fixture_d["chunks"])


def test_features_for_video_match_official_chunks(
    extractor: AudioFeatureExtractor, fixture_d: dict[str, torch.Tensor]
) -> None:
    chunks = extractor.features_for_video(fixture_d["waveform"].numpy(), fps=24)
    assert chunks.shape == (50, 50, 384)
    torch.testing.assert_close(chunks, fixture_d["chunks"], atol=FEATURES_ATOL, rtol=0)


def test_num_frames_takes_exactly_the_frames_a_video_needs(fixture_d: dict[str, torch.Tensor]) -> None:
    embeddings = fixture_d["encoder_embeddings"]
    first_twenty = AudioFeatureExtractor.frame_chunks(embeddings, fps=24, num_frames=20)
    assert torch.equal(first_twenty, fixture_d["chunks"][:20])
    past_the_end = chunk_indices(100, fps=24, num_frames=60)
    assert past_the_end.shape == (60, 10)
    assert torch.equal(past_the_end[:50], fixture_d["chunk_indices"])
    assert torch.all(past_the_end[55:] == 99)


def test_chunk_centres_follow_the_video_frame_rate() -> None:
    indices = chunk_indices(1000, fps=25, num_frames=4)
    assert indices[:, 4].tolist() == [0, 2, 4, 6]  # two tokens per frame at 25 fps
    assert indices[3].tolist() == list(range(2, 12))
    assert frame_count_for_tokens(1000, fps=25) == 502


def test_chunking_rejects_no_tokens_and_bad_rates() -> None:
    with pytest.raises(ValueError, match="no audio tokens to chunk"):
        chunk_indices(0, fps=24, num_frames=3)
    with pytest.raises(ValueError, match="fps must be positive"):
        frame_count_for_tokens(100, fps=0)
    with pytest.raises(ValueError, match="num_frames must not be negative"):
        chunk_indices(100, fps=24, num_frames=-1)


def test_long_audio_is_encoded_in_padded_30_second_segments() -> None:
    # A narrow encoder keeps this fast; the segmenting does not depend on the width.
    encoder = WhisperAudioEncoder(n_audio_state=8, n_audio_head=2, n_audio_layer=1).eval()
    extractor = AudioFeatureExtractor(encoder)
    waveform = np.random.default_rng(0).normal(0.0, 0.1, 65 * 16_000).astype(np.float32)  # 6500 mel frames
    embeddings = extractor.encoder_embeddings(waveform)
    assert embeddings.shape == (1500 + 1500 + 250, 2, 8)

    mel = log_mel_spectrogram(waveform)  # normalised over the whole clip, as the official code does
    with torch.no_grad():
        second = encoder(mel[None, :, 3000:6000])[0]
        last = encoder(F.pad(mel[:, 6000:], (0, 2500))[None])[0]
    torch.testing.assert_close(embeddings[1500:3000], second)
    torch.testing.assert_close(embeddings[3000:], last[:250])
