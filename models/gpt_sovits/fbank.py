"""The speaker net's front end: torchaudio-compatible sinc resampling and Kaldi log-mel fbank.

GPT-SoVITS v2Pro resamples the 32 kHz reference to 16 kHz with torchaudio's default
`Resample` and computes 80-bin Kaldi fbank features with the Kaldi-compliance code that the
ERes2NetV2 speaker net was trained on. torchaudio has no build for our torch, so both are
re-derived here in plain torch, float32, following the same arithmetic so that the
features agree with the official ones to float rounding.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

FLOAT32_EPS = torch.finfo(torch.float32).eps  # Kaldi's floor for log energies


# -- resampling ---------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _sinc_kernel(orig: int, new: int, lowpass_width: int, rolloff: float) -> tuple[torch.Tensor, int]:
    """Hann-windowed sinc polyphase kernel (new, 1, taps) and its half-width in input samples.

    The same construction as torchaudio's `sinc_interp_hann`: the filter is laid out in
    float64, evaluated at every output phase, then stored as float32.
    """
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_width * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float64)[None, None] / orig
    t = torch.arange(0, -new, -1, dtype=torch.float64)[:, None, None] / new + idx
    t = (t * base).clamp(-lowpass_width, lowpass_width)
    window = torch.cos(t * math.pi / lowpass_width / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t)
    kernel = sinc * window * (base / orig)
    return kernel.to(torch.float32), width


def resample_sinc(
    waveform: torch.Tensor, orig_rate: int, new_rate: int, *, lowpass_width: int = 6, rolloff: float = 0.99
) -> torch.Tensor:
    """Resample along the last axis like torchaudio's `Resample(orig_rate, new_rate)` defaults.

    Output length is ceil(n * new / orig). Works on any leading shape, float32 in and out.
    """
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    if orig_rate == new_rate:
        return waveform
    gcd = math.gcd(int(orig_rate), int(new_rate))
    orig, new = int(orig_rate) // gcd, int(new_rate) // gcd
    kernel, width = _sinc_kernel(orig, new, lowpass_width, rolloff)
    shape = waveform.shape
    flat = waveform.reshape(-1, shape[-1]).to(torch.float32)
    length = flat.shape[-1]
    padded = torch.nn.functional.pad(flat, (width, width + orig))
    out = torch.nn.functional.conv1d(padded[:, None], kernel.to(flat.device), stride=orig)
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)
    target = math.ceil(new * length / orig)
    return out[:, :target].reshape(*shape[:-1], -1)


# -- Kaldi fbank ----------------------------------------------------------------------------------------


def _mel(freq: float) -> float:
    return 1127.0 * math.log(1.0 + freq / 700.0)


def _mel_tensor(freq: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log(1.0 + freq / 700.0)


@lru_cache(maxsize=8)
def mel_filterbank(
    num_bins: int, fft_size: int, sample_rate: float, low_freq: float, high_freq: float
) -> torch.Tensor:
    """Kaldi's triangular mel filters, (num_bins, fft_size // 2 + 1); the Nyquist column is zero."""
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist  # Kaldi: a non-positive high_freq is an offset from Nyquist
    if not (0.0 <= low_freq < high_freq <= nyquist):
        raise ValueError(f"bad mel range {low_freq}..{high_freq} Hz for sample rate {sample_rate}")
    mel_low, mel_high = _mel(low_freq), _mel(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    index = torch.arange(num_bins, dtype=torch.float32).unsqueeze(1)
    left = mel_low + index * delta
    center = mel_low + (index + 1.0) * delta
    right = mel_low + (index + 2.0) * delta
    bin_freqs = (sample_rate / fft_size) * torch.arange(fft_size // 2, dtype=torch.float32)
    mel = _mel_tensor(bin_freqs).unsqueeze(0)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return torch.nn.functional.pad(banks, (0, 1))


@lru_cache(maxsize=8)
def _povey_window(size: int) -> torch.Tensor:
    # A Hann window raised to 0.85: like Hann but reaches zero at both ends.
    return torch.hann_window(size, periodic=False, dtype=torch.float32).pow(0.85)


def kaldi_fbank(
    waveform: torch.Tensor,
    *,
    sample_rate: float = 16000.0,
    num_mel_bins: int = 80,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    preemphasis: float = 0.97,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    dither: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Log-mel filterbank of a mono waveform, (frames, num_mel_bins), as Kaldi compute-fbank-feats.

    Fixed Kaldi choices (the ones ERes2NetV2 uses): Povey window, frames that fit entirely
    (snip_edges), per-frame DC removal, pre-emphasis, FFT size rounded up to a power of two,
    power spectrum, log floored at float32 eps, no energy column, no mean subtraction.
    `waveform` is (n,) or (1, n), float in [-1, 1] (the scale only shifts the log by a constant).
    """
    if waveform.dim() == 2 and waveform.shape[0] == 1:
        waveform = waveform[0]
    if waveform.dim() != 1:
        raise ValueError(
            f"kaldi_fbank takes one mono waveform (n,) or (1, n), got shape {tuple(waveform.shape)}"
        )
    waveform = waveform.to(torch.float32)
    shift = int(sample_rate * frame_shift_ms * 0.001)
    size = int(sample_rate * frame_length_ms * 0.001)
    fft_size = 1 << (size - 1).bit_length()
    if waveform.shape[0] < size:
        raise ValueError(f"need at least {size} samples for one fbank frame, got {waveform.shape[0]}")
    frames = waveform.unfold(0, size, shift)  # (m, size)
    if dither != 0.0:
        frames = frames + dither * torch.randn(frames.shape, generator=generator, dtype=frames.dtype)
    frames = frames - frames.mean(dim=1, keepdim=True)
    # Pre-emphasis inside each frame; the first sample is treated as its own predecessor.
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = (frames - preemphasis * previous) * _povey_window(size).to(frames.device)
    frames = torch.nn.functional.pad(frames, (0, fft_size - size))
    power = torch.fft.rfft(frames).abs().pow(2.0)  # (m, fft_size // 2 + 1)
    banks = mel_filterbank(num_mel_bins, fft_size, float(sample_rate), float(low_freq), float(high_freq))
    energies = torch.mm(power, banks.to(power.device).T)
    return torch.clamp(energies, min=FLOAT32_EPS).log()
