"""Speaker embeddings from the Resemblyzer voice encoder, to tell whether a recording holds one voice.

The resemblyzer package ships a small pretrained encoder (3-layer LSTM over 40-band mel frames,
256-d output); its own module imports librosa and webrtcvad, which we do not need, so this file
loads only its weights file and rebuilds the network and the mel front end (Slaney mel scale,
25 ms / 10 ms frames, mel power without log, as the encoder was trained) with torch and numpy.
Returns None everywhere when the package is not installed, so the quality check can fall back.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
N_FFT, HOP, N_MELS = 400, 160, 40
PARTIAL_FRAMES = 160  # 1.6 s per embedding, the length the encoder was trained on
EMBEDDING_SIZE = 256

_lock = threading.Lock()
_encoder = None
_MEL = None


def weights_path() -> Path | None:
    spec = importlib.util.find_spec("resemblyzer")  # finds the files without running its imports
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    return path if path.is_file() else None


def available() -> bool:
    return weights_path() is not None


def _build_encoder():
    import torch
    from torch import nn

    class VoiceEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(N_MELS, EMBEDDING_SIZE, 3, batch_first=True)
            self.linear = nn.Linear(EMBEDDING_SIZE, EMBEDDING_SIZE)

        def forward(self, mels: torch.Tensor) -> torch.Tensor:  # (batch, frames, 40) -> (batch, 256)
            _, (hidden, _) = self.lstm(mels)
            e = torch.relu(self.linear(hidden[-1]))
            return e / (e.norm(dim=1, keepdim=True) + 1e-9)

    model = VoiceEncoder()
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)["model_state"]
    model.load_state_dict({k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))})
    return model.eval()


def _encoder_model():
    global _encoder
    with _lock:
        if _encoder is None:
            _encoder = _build_encoder()
        return _encoder


def _slaney_mel_bank() -> np.ndarray:
    global _MEL
    if _MEL is None:
        f_sp, min_log_hz = 200.0 / 3, 1000.0
        min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0

        def hz_to_mel(f: float | np.ndarray) -> np.ndarray:
            f = np.asarray(f, float)
            return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-9) / min_log_hz) / logstep, f / f_sp)

        def mel_to_hz(m: np.ndarray) -> np.ndarray:
            return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

        fft_freqs = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
        hz = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
        fdiff = np.diff(hz)
        ramps = hz[:, None] - fft_freqs[None, :]
        lower = -ramps[:-2] / fdiff[:-1, None]
        upper = ramps[2:] / fdiff[1:, None]
        bank = np.maximum(0, np.minimum(lower, upper))
        bank *= (2.0 / (hz[2 : N_MELS + 2] - hz[:N_MELS]))[:, None]  # equal area per band
        _MEL = bank.astype(np.float32)
    return _MEL


def mel_frames(wav: np.ndarray) -> np.ndarray:
    """(frames, 40) mel power of 16 kHz audio, centred frames as the encoder's training front end."""
    padded = np.pad(wav.astype(np.float32), N_FFT // 2)
    n = 1 + (len(padded) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)  # periodic Hann
    power = np.abs(np.fft.rfft(padded[idx] * window, axis=1)) ** 2
    return (power @ _slaney_mel_bank().T).astype(np.float32)


def utterance_embeddings(utterances: list[np.ndarray], hop_s: float = 0.8) -> np.ndarray | None:
    """One 256-d unit vector per utterance (16 kHz speech, each at least 1.6 s): the mean of its 1.6 s
    partials taken every `hop_s`, as the encoder's authors average them. None without the model."""
    if not available():
        return None
    span, hop = PARTIAL_FRAMES * HOP, int(hop_s * SAMPLE_RATE)
    pieces, owner = [], []
    for i, u in enumerate(utterances):
        for start in range(0, max(1, len(u) - span + 1), hop):
            piece = u[start : start + span]
            if len(piece) == span:
                pieces.append(piece)
                owner.append(i)
    if not pieces:
        return None
    partials = _embed(np.stack(pieces))
    owner_arr = np.array(owner)
    out = np.stack([partials[owner_arr == i].mean(axis=0) for i in range(len(utterances)) if (owner_arr == i).any()])
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def partial_embeddings(speech: np.ndarray) -> np.ndarray | None:
    """One 256-d unit vector per 1.6 s of `speech` (16 kHz, pauses already removed); None without the model."""
    if not available() or len(speech) < PARTIAL_FRAMES * HOP:
        return None
    n = len(speech) // (PARTIAL_FRAMES * HOP)
    return _embed(speech[: n * PARTIAL_FRAMES * HOP].reshape(n, -1))


def window_embeddings(x: np.ndarray, starts: list[int]) -> np.ndarray | None:
    """One 256-d unit vector per 1.6 s window of 16 kHz `x` starting at each of `starts` (samples; a
    window running past the end is padded with silence); None without the model."""
    if not available() or not starts:
        return None
    span = PARTIAL_FRAMES * HOP
    padded = np.concatenate([x, np.zeros(span, x.dtype)])
    return _embed(np.stack([padded[s : s + span] for s in starts]))


def _embed(chunks: np.ndarray) -> np.ndarray:
    import torch

    chunks = chunks.astype(np.float64)
    # The encoder was trained on audio normalised up to -30 dBFS.
    gain = np.sqrt(10 ** (-30 / 10) / ((chunks**2).mean(axis=1) + 1e-12))
    chunks = chunks * np.maximum(gain, 1.0)[:, None]
    mels = np.stack([mel_frames(c)[:PARTIAL_FRAMES] for c in chunks])
    with torch.inference_mode():
        return _encoder_model()(torch.from_numpy(mels)).numpy()
