"""Speaking a text: split into sentences, one WAV per sentence as soon as it is ready, then one
WAV for the whole text. Plain arguments only (text, backend, voice, folder, cancel event), so any
step runner or front end can drive it."""

from __future__ import annotations

import re
import threading
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .backends import SpeechBackend, SpeechCancelled, SpeechError, Voice

MAX_CHARS = 20_000  # longer answers are cut: bounded work whatever the model wrote
MAX_SENTENCE_CHARS = 400  # a longer sentence is cut at a comma or a space
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？;])\s+|\n\s*\n|\n(?=\s*[-*•\d])")
_MARKUP = re.compile(r"```.*?```|`|\*+|_{2,}|^#+\s*|^>\s*", re.DOTALL | re.MULTILINE)
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")


def speakable(text: str) -> str:
    """The text without Markdown that would be read out loud (stars, hashes, code fences)."""
    return _MARKUP.sub("", _LINK.sub(r"\1", text))


def split_sentences(text: str, max_chars: int = MAX_SENTENCE_CHARS) -> list[str]:
    """Sentences of ``text`` in order, none longer than ``max_chars``, empty ones dropped."""
    sentences: list[str] = []
    for piece in _SENTENCE_END.split(text):
        piece = " ".join(piece.split())
        while len(piece) > max_chars:
            cut = max(piece.rfind(", ", 0, max_chars), piece.rfind(" ", 0, max_chars))
            cut = cut + 1 if cut > 0 else max_chars
            sentences.append(piece[:cut].strip())
            piece = piece[cut:].strip()
        if any(ch.isalnum() for ch in piece):
            sentences.append(piece)
    return sentences


@dataclass(frozen=True)
class SpokenPart:
    """One sentence spoken: ``index`` of ``total``, its WAV file."""

    index: int
    total: int
    text: str
    path: Path


@dataclass(frozen=True)
class Speech:
    """A whole text spoken: the joined WAV, the sentence files, length and what was cut."""

    path: Path
    parts: tuple[Path, ...]
    seconds: float
    truncated: bool


def speak_parts(
    text: str,
    backend: SpeechBackend,
    voice: Voice,
    folder: Path,
    stem: str,
    cancel: threading.Event | None = None,
) -> Iterator[SpokenPart]:
    """Speak ``text`` sentence by sentence into ``folder/stem.partN.wav``, yielding each part as
    soon as it is written (so playback can start before the end)."""
    sentences = split_sentences(speakable(text[:MAX_CHARS]))
    if not sentences:
        raise SpeechError("there is nothing to speak (the text is empty)", "check text:")
    folder.mkdir(parents=True, exist_ok=True)
    for index, sentence in enumerate(sentences):
        if cancel is not None and cancel.is_set():
            raise SpeechCancelled()
        out = folder / f"{stem}.part{index + 1}.wav"
        yield SpokenPart(
            index, len(sentences), sentence, backend.synthesize(sentence, voice, out, cancel)
        )


def join_wavs(parts: list[Path], out: Path, pause: float = 0.15) -> float:
    """Concatenate WAV files of the same format into ``out`` with a short pause between them;
    returns the length in seconds."""
    frames = 0
    with wave.open(str(out), "wb") as joined:
        params = None
        for index, part in enumerate(parts):
            with wave.open(str(part), "rb") as source:
                if params is None:
                    params = source.getparams()
                    joined.setparams(params)
                elif source.getparams()[:3] != params[:3]:
                    raise SpeechError(f"{part.name} has another audio format than the first part")
                if index:
                    silence = int(params.framerate * pause)
                    joined.writeframes(b"\0" * silence * params.sampwidth * params.nchannels)
                    frames += silence
                data = source.readframes(source.getnframes())
                joined.writeframes(data)
                frames += len(data) // (params.sampwidth * params.nchannels)
    return frames / params.framerate if params else 0.0


def free_stem(folder: Path, stem: str) -> str:
    """``stem``, or ``stem-1``, ``stem-2``… so that an earlier turn's audio is never overwritten."""
    candidate, counter = stem, 1
    while (folder / f"{candidate}.wav").exists():
        candidate, counter = f"{stem}-{counter}", counter + 1
    return candidate


def speak(
    text: str,
    backend: SpeechBackend,
    voice: Voice,
    folder: Path,
    stem: str,
    cancel: threading.Event | None = None,
) -> Iterator[SpokenPart | Speech]:
    """:func:`speak_parts`, then the whole text as one WAV (``folder/stem.wav``) last."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = free_stem(folder, stem)
    parts: list[Path] = []
    for part in speak_parts(text, backend, voice, folder, stem, cancel):
        parts.append(part.path)
        yield part
    out = folder / f"{stem}.wav"
    seconds = join_wavs(parts, out)
    yield Speech(out, tuple(parts), seconds, len(text) > MAX_CHARS)
