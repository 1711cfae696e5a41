"""The linear magnitude spectrogram SoVITS reads its reference (timbre) audio through.

Official settings for every v1/v2/v2Pro model: 32 kHz audio, n_fft 2048, Hann window 2048
(periodic), hop 640, reflect padding of (n_fft - hop) / 2 = 704 samples on each side and an
uncentred STFT, magnitude sqrt(re^2 + im^2 + 1e-8). Output (1, 1025, frames).
"""

from __future__ import annotations

import torch

SAMPLE_RATE = 32000
N_FFT = 2048
HOP_LENGTH = 640
WIN_LENGTH = 2048

_windows: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}


def _hann(win_length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    key = (win_length, dtype, device)
    if key not in _windows:
        _windows[key] = torch.hann_window(win_length, periodic=True, dtype=dtype, device=device)
    return _windows[key]


def linear_spectrogram(
    audio: torch.Tensor,
    n_fft: int = N_FFT,
    hop_length: int = HOP_LENGTH,
    win_length: int = WIN_LENGTH,
) -> torch.Tensor:
    """Magnitude spectrogram of (channels, samples) or (samples,) float audio -> (channels, n_fft//2+1, frames)."""
    if audio.dim() == 1:
        audio = audio.unsqueeze(0)
    audio = audio.float()
    pad = (n_fft - hop_length) // 2
    padded = torch.nn.functional.pad(audio.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    spec = torch.stft(
        padded,
        n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window=_hann(win_length, padded.dtype, padded.device),
        center=False,
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    spec = torch.view_as_real(spec)
    return torch.sqrt(spec.pow(2).sum(-1) + 1e-8)


def reference_spectrogram(audio_32k: torch.Tensor) -> torch.Tensor:
    """Spectrogram of a 32 kHz reference clip as the official TTS prepares it.

    Stereo (2, n) is averaged to mono first; a clip peaking above 1 is divided by min(2, peak)
    (the official guard for int-scaled or clipped input). Returns (1, 1025, frames).
    """
    if audio_32k.dim() == 1:
        audio_32k = audio_32k.unsqueeze(0)
    audio = audio_32k.float()
    if audio.shape[0] == 2:
        audio = audio.mean(0, keepdim=True)
    peak = float(audio.abs().max()) if audio.numel() else 0.0
    if peak > 1.0:
        audio = audio / min(2.0, peak)
    return linear_spectrogram(audio)
