"""Speech backends: espeak-ng (a system program, offline, the embedded default) and Piper (neural
voices from ONNX files the user downloads). Each turns one short text into one WAV file."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


class SpeechError(RuntimeError):
    """A speech failure a person can act on; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class SpeechCancelled(Exception):
    """The turn was cancelled while a sentence was being spoken."""


@dataclass(frozen=True)
class Voice:
    """How to speak: a backend-specific voice name, a language and a speed (1.0 = normal)."""

    voice: str = ""
    language: str = "en"
    speed: float = 1.0


@runtime_checkable
class SpeechBackend(Protocol):
    """What ``register_speech_backends`` takes: a name and ``synthesize(text, voice, out, cancel)``
    which writes ``out`` (a WAV file) and returns it."""

    name: str
    summary: str

    def synthesize(
        self, text: str, voice: Voice, out: Path, cancel: threading.Event | None = None
    ) -> Path: ...


# A voice or language goes on a command line: letters, digits and a few separators, never an option.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-/]{0,63}$")
# Personalities write their language as a word ("english"); espeak-ng wants a code.
LANGUAGE_CODES = {
    "english": "en",
    "french": "fr",
    "german": "de",
    "spanish": "es",
    "italian": "it",
    "portuguese": "pt",
    "dutch": "nl",
    "russian": "ru",
    "chinese": "cmn",
    "japanese": "ja",
    "arabic": "ar",
    "hindi": "hi",
    "polish": "pl",
    "turkish": "tr",
}
SECONDS_PER_SENTENCE = 60.0  # a sentence is at most a few hundred characters


def language_code(language: str) -> str:
    """``english`` -> ``en``; a code (``en-gb``) is kept as it is."""
    lowered = language.strip().lower()
    return LANGUAGE_CODES.get(lowered, lowered) or "en"


def _checked(name: str, what: str) -> str:
    if not _SAFE_NAME.match(name):
        raise SpeechError(
            f"{what} {name!r} is not a valid name",
            "use letters, digits and - _ . + / only, e.g. en-us or en+f3",
        )
    return name


class EspeakBackend:
    """espeak-ng through its command line: offline, tiny, many languages (robotic but clear)."""

    name = "espeak"
    summary = "espeak-ng (offline; voice: a language code, optionally +variant, e.g. en-us+f3)"

    def __init__(self, program: str = "espeak-ng") -> None:
        self.program = program

    def voice_spec(self, voice: Voice) -> str:
        """The ``-v`` argument: the voice, or the language; ``+f3`` alone adds a variant to it."""
        language = language_code(voice.language)
        if not voice.voice:
            return _checked(language, "language")
        if voice.voice.startswith("+"):
            return _checked(language + voice.voice, "voice")
        return _checked(voice.voice, "voice")

    def synthesize(
        self, text: str, voice: Voice, out: Path, cancel: threading.Event | None = None
    ) -> Path:
        program = shutil.which(self.program)
        if program is None:
            raise SpeechError(
                "espeak-ng is not installed",
                "install it: sudo apt-get install espeak-ng (macOS: brew install espeak-ng), "
                "or run `make system-deps`",
            )
        # espeak-ng's speed is in words per minute; 175 is its normal pace.
        wpm = str(max(80, min(450, round(175 * voice.speed))))
        command = [program, "-v", self.voice_spec(voice), "-s", wpm, "-w", str(out), "--stdin"]
        run_cancellable(command, text, cancel, SECONDS_PER_SENTENCE)
        if not out.is_file() or out.stat().st_size <= 44:  # a WAV header and nothing else
            raise SpeechError("espeak-ng wrote no audio", "check the voice and the text")
        return out


def run_cancellable(
    command: list[str], stdin: str, cancel: threading.Event | None, timeout: float
) -> None:
    """Run ``command`` with ``stdin``; stop it when ``cancel`` is set or ``timeout`` passes."""
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout
    data: str | None = stdin
    while True:
        try:
            _out, err = process.communicate(input=data, timeout=0.1)
            break
        except subprocess.TimeoutExpired:
            data = None  # already sent; communicate() may be called again without it
            if (cancel is not None and cancel.is_set()) or time.monotonic() > deadline:
                process.kill()
                process.communicate()
                if cancel is not None and cancel.is_set():
                    raise SpeechCancelled() from None
                raise SpeechError(
                    f"{Path(command[0]).name} took longer than {timeout:.0f}s for one sentence"
                ) from None
    if process.returncode != 0:
        reason = (err or "").strip().splitlines()
        raise SpeechError(
            f"{Path(command[0]).name} failed: {reason[-1] if reason else f'exit {process.returncode}'}",
            "check the voice name: `espeak-ng --voices` lists them",
        )


def voices_dir() -> Path:
    """Where Piper voices live: ``$LOLLMS_HOME/voices`` (NAME.onnx with NAME.onnx.json)."""
    from lollms_runtime.home import home

    return home() / "voices"


def piper_voice_file(name: str) -> Path:
    """A Piper voice by file path, or by name in :func:`voices_dir` (``en_US-lessac-medium``)."""
    if not name:
        raise SpeechError(
            "the piper backend needs a voice",
            f"set voice: to a voice name in {voices_dir()} (e.g. en_US-lessac-medium)",
        )
    given = Path(name).expanduser()
    candidates = [given] if given.suffix == ".onnx" else []
    candidates.append(voices_dir() / f"{_checked(name, 'voice')}.onnx")
    for path in candidates:
        if path.is_file():
            return path
    raise SpeechError(
        f"no Piper voice named {name!r}",
        f"download {name}.onnx and {name}.onnx.json into {voices_dir()} "
        "(voices: https://huggingface.co/rhasspy/piper-voices)",
    )


class PiperBackend:
    """Piper neural voices (ONNX), for users who download voice files; imported on first use."""

    name = "piper"
    summary = "Piper neural voices (pip install 'lollms-speech[piper]'; voice files in $LOLLMS_HOME/voices)"

    def __init__(self) -> None:
        self._voices: dict[Path, Any] = {}
        self._lock = threading.Lock()

    def _load(self, path: Path) -> Any:
        try:
            from piper import PiperVoice  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise SpeechError(
                "the piper backend needs the piper-tts package, which is not installed",
                "pip install 'lollms-speech[piper]' (or use backend: espeak, which works offline)",
            ) from None
        with self._lock:  # one load per voice file, shared by every turn
            if path not in self._voices:
                self._voices[path] = PiperVoice.load(str(path))
            return self._voices[path]

    def synthesize(
        self, text: str, voice: Voice, out: Path, cancel: threading.Event | None = None
    ) -> Path:
        import wave

        model = self._load(piper_voice_file(voice.voice))
        if cancel is not None and cancel.is_set():
            raise SpeechCancelled()
        length_scale = 1.0 / max(0.25, min(4.0, voice.speed))  # Piper: larger is slower
        with wave.open(str(out), "wb") as wav:
            if hasattr(model, "synthesize_wav"):  # piper-tts >= 1.3
                from piper import SynthesisConfig  # type: ignore[import-not-found,unused-ignore]

                model.synthesize_wav(
                    text, wav, syn_config=SynthesisConfig(length_scale=length_scale)
                )
            else:
                model.synthesize(text, wav, length_scale=length_scale)
        return out


BUILTIN_BACKENDS: tuple[type[EspeakBackend] | type[PiperBackend], ...] = (
    EspeakBackend,
    PiperBackend,
)
