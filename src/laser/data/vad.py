"""VAD evaluation data made here: espeak-ng speech placed at known offsets in silence, noise or tones.

Each clip is 6 s at 16 kHz holding one or two utterances (several espeak-ng voices and languages) at
random offsets, over one background: silence, white noise, pink noise or a "music-like" chord of tones
with a slow envelope, at SNR 20, 10 or 5 dB. The true segments are where the clean speech is above 1 %
of its peak envelope (espeak pads its output with silence). Seeded, generated once and cached.

``vad-espeak`` (a laser dataset) holds what a stateful chunk model sees: rows of (chunk, state_in,
context) as the FP32 model produces them while reading the clips (realistic calibration inputs), and
labels (rows, 2) = (speech in this chunk: 0/1, clip index). Metrics re-run the model's own state.

espeak-ng: ``apt-get install -y espeak-ng`` (``make real-models``).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from laser.errors import NotFoundError

RATE, CLIP_S, CHUNK = 16_000, 6.0, 512
CLIP = int(RATE * CLIP_S) // CHUNK * CHUNK  # samples, a whole number of chunks
VOICES = ("en", "en-us", "de", "fr", "es", "it", "nl", "pt")
SENTENCES = ("the model runs on two cores", "please measure the latency first", "hello, this is a short test",
             "export it and serve it over http", "numbers like forty two and seven", "ein kleiner satz zum testen",
             "une phrase pour la detection", "una frase para probar la voz")
BACKGROUNDS = ("silence", "white", "pink", "tones")
SNRS = (20.0, 10.0, 5.0)
SIZES = {"train": 16, "val": 8, "test": 24}
SEEDS = {"train": 21, "val": 22, "test": 23}
ESPEAK_HINT = "apt-get install -y espeak-ng"


def speak(text: str, voice: str = "en", speed: int = 160) -> np.ndarray:
    """espeak-ng's speech for ``text`` as float32 at 16 kHz."""
    from laser.hub.pipelines.vad import read_wav, resample

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise NotFoundError(f"espeak-ng is not installed; {ESPEAK_HINT}")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run([exe, "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True, capture_output=True,
                       timeout=60)
        audio, rate, _ = read_wav(wav)
    return resample(audio, rate, RATE)


def speech_bounds(speech: np.ndarray) -> tuple[int, int]:
    """First and last sample of a clean utterance above 1 % of its peak 10 ms envelope."""
    frame = RATE // 100
    env = np.sqrt(np.convolve(speech ** 2, np.ones(frame) / frame, mode="same"))
    on = np.flatnonzero(env > 0.01 * env.max())
    return int(on[0]), int(on[-1])


def background(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "silence":
        return np.zeros(n, np.float32)
    if kind == "white":
        return rng.standard_normal(n).astype(np.float32)
    if kind == "pink":  # 1/f spectrum
        spec = np.fft.rfft(rng.standard_normal(n))
        spec /= np.sqrt(np.maximum(np.arange(len(spec)), 1))
        return np.fft.irfft(spec, n).astype(np.float32)
    t = np.arange(n) / RATE
    root = float(rng.choice([220.0, 261.6, 293.7, 329.6]))
    chord = sum(np.sin(2 * np.pi * root * r * t) for r in (1.0, 1.25, 1.5, 2.0))
    return (chord * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))).astype(np.float32)


def clip(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """(6 s of audio, true speech segments in seconds)."""
    audio = np.zeros(CLIP, np.float32)
    truth = []
    count = int(rng.integers(1, 3))
    slots = np.linspace(0, CLIP, count + 1).astype(int)
    for k in range(count):
        speech = speak(str(rng.choice(SENTENCES)), str(rng.choice(VOICES)), int(rng.integers(140, 190)))
        a, b = speech_bounds(speech)
        speech = speech[a:b + 1]
        room = slots[k + 1] - slots[k] - len(speech)
        if room <= 0:
            speech, room = speech[: slots[k + 1] - slots[k] - 1], 1
        at = int(slots[k] + rng.integers(0, room))
        audio[at:at + len(speech)] += speech
        truth.append((at / RATE, (at + len(speech)) / RATE))
    kind = str(rng.choice(BACKGROUNDS))
    if kind != "silence":
        noise = background(kind, CLIP, rng)
        snr = float(rng.choice(SNRS))
        p_speech = float(np.mean(audio[audio != 0] ** 2))
        noise *= np.sqrt(p_speech / (10 ** (snr / 10)) / max(float(np.mean(noise ** 2)), 1e-12))
        audio = audio + noise
    return np.clip(audio, -1, 1).astype(np.float32), truth


def chunk_labels(truth: list[tuple[float, float]]) -> np.ndarray:
    """1 for chunks at least half inside a true segment."""
    frames = CLIP // CHUNK
    mid = (np.arange(frames) + 0.5) * CHUNK / RATE
    return np.array([any(a <= m <= b for a, b in truth) for m in mid], np.int64)


def clips(split: str) -> list[tuple[np.ndarray, list[tuple[float, float]]]]:
    rng = np.random.default_rng(SEEDS[split])
    return [clip(rng) for _ in range(SIZES[split])]


def vad_espeak(split: str) -> Any:
    """The ``vad-espeak`` dataset (see the module doc), generated once and cached."""
    from laser import hub
    from laser.data import SPLITS, Dataset
    from laser.errors import ConfigError
    from laser.hub.download import cache_dir
    from laser.runtime import run

    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of {SPLITS}")
    path = cache_dir().parent / "datasets" / f"vad-espeak-v1-{split}.npz"
    if not path.is_file():
        made = clips(split)
        audio = np.stack([a for a, _ in made])  # (clips, samples)
        frames = CLIP // CHUNK
        chunks = audio.reshape(len(made), frames, CHUNK)
        state = np.zeros((len(made), 2, 128), np.float32)
        context = np.zeros((len(made), 64), np.float32)
        states, contexts = [], []
        with run(hub.load("silero-vad", progress=False), backend="onnxruntime") as model:
            for i in range(frames):  # all clips at once: one independent sequence per batch row
                states.append(state)
                contexts.append(context)
                out = model({"chunk": chunks[:, i], "state_in": state, "context": context})
                state, context = out["state_out"], out["context_out"]
        x = chunks.reshape(-1, CHUNK)
        s = np.stack(states, 1).reshape(-1, 2, 128)
        c = np.stack(contexts, 1).reshape(-1, 64)
        y = np.stack([np.stack([chunk_labels(t), np.full(frames, k)], 1) for k, (_, t) in enumerate(made)]).reshape(-1, 2)
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.stem + ".part.npz")
        np.savez(part, x=x, s=s, c=c, y=y)
        part.replace(path)
    with np.load(path) as f:
        return Dataset("vad-espeak", (f["x"], f["s"], f["c"]), f["y"])
