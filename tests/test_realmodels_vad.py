"""Silero VAD through laser: espeak-ng speech found at its true place, stateful serving, bad audio."""

from __future__ import annotations

import os
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from laser.errors import InputError

REAL_CACHE = Path(os.environ.get("LASER_REAL_CACHE", os.path.expanduser("~/.cache/laser/weights")))


@pytest.fixture
def vad_model(monkeypatch):
    from laser import hub

    monkeypatch.setenv("LASER_CACHE", str(REAL_CACHE))
    monkeypatch.setenv("LASER_OFFLINE", "1")
    if not (REAL_CACHE / "silero-vad" / hub.card("silero-vad").weights.filename).is_file():
        pytest.skip("silero-vad is not cached; run `make real-models` (laser hub fetch silero-vad)")
    return hub.load("silero-vad")


@pytest.fixture(scope="module")
def talk():
    """2.5 s: silence, one espeak-ng utterance at 0.6 s, silence; and the utterance's true bounds (s)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed: apt-get install -y espeak-ng")
    from laser.data.vad import RATE, speak, speech_bounds

    speech = speak("hello this is laser speaking", "en")
    a, b = speech_bounds(speech)
    speech = speech[a:b + 1]
    audio = np.zeros(int(0.6 * RATE) + len(speech) + RATE, np.float32)
    start = int(0.6 * RATE)
    audio[start:start + len(speech)] = speech
    return audio, (0.6, (start + len(speech)) / RATE)


def _wav(path: Path, audio: np.ndarray, rate: int, channels: int = 1) -> Path:
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(pcm, channels).tobytes())
    return path


def test_vad_finds_the_utterance_within_0_2_s_of_its_true_bounds(vad_model, talk, tmp_path):
    from laser.hub.pipelines.vad import VADPipeline

    audio, (start, end) = talk
    result = VADPipeline(vad_model, backend="onnxruntime").run(_wav(tmp_path / "talk.wav", audio, 16_000))
    assert len(result["segments"]) == 1 and result["notes"] == []
    seg = result["segments"][0]
    assert abs(seg["start"] - start) < 0.2 and abs(seg["end"] - end) < 0.2


def test_another_rate_and_stereo_are_resampled_and_said_so(vad_model, talk, tmp_path):
    from laser.hub.pipelines.vad import VADPipeline, resample

    audio, (start, end) = talk
    wav = _wav(tmp_path / "talk44.wav", resample(audio, 16_000, 44_100), 44_100, channels=2)
    result = VADPipeline(vad_model, backend="onnxruntime").run(wav)
    assert result["notes"] == ["mixed 2 channels down to mono", "resampled from 44100 Hz to 16000 Hz"]
    seg = result["segments"][0]
    assert abs(seg["start"] - start) < 0.2 and abs(seg["end"] - end) < 0.2


def test_a_corrupt_wav_is_a_clear_error(vad_model, tmp_path):
    from laser.hub.pipelines.vad import VADPipeline

    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(InputError, match="cannot read a WAV file"):
        VADPipeline(vad_model, backend="onnxruntime").run(bad)


def test_vad_served_over_http_with_server_kept_state_gives_the_same_segments(vad_model, talk, tmp_path):
    from laser.hub.pipelines.vad import VADPipeline, http_step
    from laser.serve import Server

    audio, _ = talk
    wav = _wav(tmp_path / "talk.wav", audio, 16_000)
    pipe = VADPipeline(vad_model, backend="onnxruntime")
    local = pipe.run(wav)
    # No sequence_state given: the server takes the pairs the card declares (state_in -> state_out, context ->
    # context_out) and keeps them per sequence; the client sends only the chunks.
    with Server([vad_model], http_port=0, grpc_port=None, socket_port=None, backend="onnxruntime",
                max_batch_size=4) as server:
        served = pipe.run(wav, step=http_step(server.http_url, "silero-vad", sequence_id=7))
    assert served["segments"] == local["segments"] and local["segments"]
