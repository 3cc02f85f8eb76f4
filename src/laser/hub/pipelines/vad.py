"""Voice activity detection with Silero VAD: a WAV file -> speech segments (start/end seconds).

The audio is read with the standard library (PCM WAV, 8/16/24/32-bit), mixed down to mono and resampled to
16 kHz (scipy's polyphase filter) when it is not — the answer says so. The model runs chunk by chunk
(512 samples = 32 ms), carrying its recurrent state and 64 samples of context from one call to the next;
the probabilities become segments as the publisher's ``get_speech_timestamps`` makes them.

``step=`` swaps where the model runs: e.g. ``http_step(url, "silero-vad", sequence_id=7)`` sends each chunk
to a laser server that keeps the state of that sequence itself (sequence batching).
"""

from __future__ import annotations

import io
import os
import wave
from collections.abc import Callable, Mapping
from math import gcd
from pathlib import Path
from typing import Any

import numpy as np

from laser.errors import InputError
from laser.hub.pipelines import Pipeline, write_json

Step = Callable[[np.ndarray, bool, bool], float]  # (chunk (512,), first, last) -> speech probability


def read_wav(source: str | os.PathLike[str] | bytes) -> tuple[np.ndarray, int, int]:
    """(float32 mono samples in [-1, 1], sample rate, channels in the file); a broken WAV -> InputError."""
    what = f"{len(source)} bytes" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        if not isinstance(source, (bytes, bytearray)) and not Path(source).is_file():
            raise InputError(f"audio file {source} does not exist")
        data = bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
        with wave.open(io.BytesIO(data)) as w:
            rate, channels, width, frames = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
            raw = w.readframes(frames)
    except (wave.Error, EOFError, OSError) as exc:
        raise InputError(f"cannot read a WAV file from {what}: {exc}; give a PCM WAV file") from None
    if width == 3:  # 24-bit: widen to 32
        b = np.frombuffer(raw[: len(raw) // 3 * 3], np.uint8).reshape(-1, 3)
        x = (b[:, 0].astype(np.int32) << 8 | b[:, 1].astype(np.int32) << 16 | b[:, 2].astype(np.int32) << 24)
        audio: np.ndarray = x.astype(np.float32) / 2**31
    elif width in (1, 2, 4):
        dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
        a = np.frombuffer(raw[: len(raw) // width * width], dtype).astype(np.float32)
        audio = (a - 128) / 128 if width == 1 else a / np.float32(2 ** (8 * width - 1))
    else:
        raise InputError(f"{what} has {8 * width}-bit samples; give 8-, 16-, 24- or 32-bit PCM WAV")
    if channels > 1:
        audio = audio[: len(audio) // channels * channels].reshape(-1, channels).mean(1)
    return np.ascontiguousarray(audio, np.float32), rate, channels


def resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return audio
    from scipy.signal import resample_poly

    g = gcd(rate, target)
    return resample_poly(audio, target // g, rate // g).astype(np.float32)


def segments(probs: np.ndarray, pre: Mapping[str, Any], samples: int) -> list[dict[str, float]]:
    """Speech segments from per-chunk probabilities (Silero's rules: start at >= threshold, end after
    ``min_silence_ms`` under threshold - 0.15, drop those under ``min_speech_ms``, pad by ``speech_pad_ms``)."""
    rate, chunk = int(pre["sample_rate"]), int(pre["chunk"])
    on, off = float(pre.get("threshold", 0.5)), float(pre.get("threshold", 0.5)) - 0.15
    min_silence, min_speech = rate * pre.get("min_silence_ms", 100) / 1000, rate * pre.get("min_speech_ms", 250) / 1000
    pad = int(rate * pre.get("speech_pad_ms", 30) / 1000)
    found: list[list[int]] = []
    start: int | None = None
    silent_from: int | None = None
    for i, p in enumerate(probs):
        here = i * chunk
        if p >= on:
            silent_from = None
            if start is None:
                start = here
        elif p < off and start is not None:
            silent_from = here if silent_from is None else silent_from
            if here - silent_from >= min_silence:
                if silent_from - start > min_speech:
                    found.append([start, silent_from])
                start, silent_from = None, None
    if start is not None and samples - start > min_speech:
        found.append([start, samples])
    for k, seg in enumerate(found):  # pad, without overlapping the neighbours
        seg[0] = max(0, seg[0] - pad) if k == 0 else max(seg[0] - pad, (found[k - 1][1] + seg[0]) // 2)
        seg[1] = min(samples, seg[1] + pad) if k == len(found) - 1 else min(seg[1] + pad, (seg[1] + found[k + 1][0]) // 2)
    return [{"start": round(a / rate, 3), "end": round(b / rate, 3)} for a, b in found]


class VADPipeline(Pipeline):
    task = "vad"

    def __init__(self, artifact: Any, backend: str = "auto", **options: Any):
        # "auto" means onnxruntime here: a chunk takes well under a millisecond, and timing the candidate
        # runtimes on it was seen to take over a minute on a loaded 2-core machine.
        super().__init__(artifact, "onnxruntime" if backend == "auto" else backend, **options)

    def local_step(self) -> Step:
        """The model run here, state and context kept in this closure (zeros at the start)."""
        spec = {t.name: t for t in self.artifact.spec.inputs}
        names = self.artifact.preprocessing["state"]  # state input -> the output that updates it
        held: dict[str, np.ndarray] = {}

        def step(chunk: np.ndarray, first: bool, last: bool) -> float:
            if first or not held:
                held.update({i: np.zeros(spec[i].concrete_shape(batch=1), np.float32) for i in names})
            out = self.infer({"chunk": chunk[None].astype(np.float32), **held})
            held.update({i: out[o] for i, o in names.items()})
            return float(out["probability"].reshape(-1)[0])

        return step

    def probabilities(self, audio: np.ndarray, step: Step | None = None) -> np.ndarray:
        """Speech probability of every 512-sample chunk of 16 kHz ``audio`` (the last one zero-padded)."""
        chunk = int(self.artifact.preprocessing["chunk"])
        run = step or self.local_step()
        n = max(1, -(-len(audio) // chunk))
        padded = np.zeros(n * chunk, np.float32)
        padded[: len(audio)] = audio
        return np.array([run(padded[i * chunk:(i + 1) * chunk], i == 0, i == n - 1) for i in range(n)], np.float32)

    def run(self, source: Any, output: str | Path | None = None, step: Step | None = None,
            **_: Any) -> dict[str, Any]:
        pre = self.artifact.preprocessing
        audio, rate, channels = read_wav(source)
        target = int(pre["sample_rate"])
        notes = []
        if channels > 1:
            notes.append(f"mixed {channels} channels down to mono")
        if rate != target:
            notes.append(f"resampled from {rate} Hz to {target} Hz")
            audio = resample(audio, rate, target)
        probs = self.probabilities(audio, step)
        result = {**self.header(), "sample_rate": target, "duration_s": round(len(audio) / target, 3),
                  "segments": segments(probs, pre, len(audio)), "notes": notes}
        if output is not None:
            directory = Path(output)
            directory.mkdir(parents=True, exist_ok=True)
            stem = Path(source).stem if isinstance(source, (str, os.PathLike)) else "result"
            result = {**result, "files": {"json": str(directory / f"{stem}.json")}}
            write_json(result, directory, stem)
        return result


def http_step(url: str, model: str, sequence_id: int | str, timeout: float = 30.0) -> Step:
    """Each chunk sent to a laser server running ``model`` as a sequence model (the server keeps the state)."""
    import httpx

    client = httpx.Client(base_url=url, timeout=timeout)

    def step(chunk: np.ndarray, first: bool, last: bool) -> float:
        body = {"parameters": {"sequence_id": sequence_id, "sequence_start": first, "sequence_end": last},
                "inputs": [{"name": "chunk", "shape": [1, len(chunk)], "datatype": "FP32",
                            "data": chunk.astype(np.float32).tolist()}]}
        r = client.post(f"/v2/models/{model}/infer", json=body)
        if r.status_code != 200:
            raise InputError(f"{url} answered {r.status_code}: {r.text[:200]}")
        if last:
            client.close()
        out = {o["name"]: o for o in r.json()["outputs"]}
        return float(np.asarray(out["probability"]["data"]).reshape(-1)[0])

    return step
