"""Offline speech synthesis with eSpeak NG, driven through ctypes.

`espeakng_loader` ships libespeak-ng 1.52 and its voice data but only exposes their paths, so
we call the C API ourselves: initialize in synchronous mode (audio comes back through a
callback, no sound device), 22,050 Hz, 16-bit. The library holds global state, so there is one
synthesizer per process; callers parallelize with processes (see corpus.py).

A voice is (base, variant, rate_wpm, pitch). eSpeak silently ignores an unknown `+variant`, so
variant names are validated against the data's `voices/!v` folder.

The library's output depends on what it synthesized before in the same process (static state in
its wave generator that `espeak_Terminate`/`espeak_Initialize` do not clear; measured: the same
text and voice three times in a row gives 10746, 10654 and 10735 samples). A fresh process is
deterministic, so `reset()` loads a private copy of the library, which starts from the same
state as a fresh process. Every builder that must reproduce its output (corpus shards, the
experiments' test sets) calls `reset()` first and then synthesizes in a fixed order.

One exception remains: variants with breath noise (`unstable_variants()`) read memory that
depends on the process (measured: en-GB-x-rp+f3 gave one of several outputs across fresh
processes, and another with address randomization off; 6 of 87 speech-like variants differed
across 3 processes, all of them breath voices).
"""
from __future__ import annotations

import ctypes
import os
from functools import lru_cache
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SYNTH_RATE_HZ = 22050

# English bases that load in espeak-ng 1.52 (`en-gb` fails: the British voice is `en`;
# `en-Shaw` is the Shavian alphabet, not an accent, so it is left out).
ENGLISH_BASES: tuple[str, ...] = (
    "en-us", "en", "en-GB-scotland", "en-GB-x-rp", "en-GB-x-gbclan", "en-GB-x-gbcwmd",
    "en-029", "en-US-nyc",
)

# C enum values from speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_RATE = 1
_ESPEAK_PITCH = 3
_ESPEAK_RANGE = 4
_ESPEAK_CHARS_UTF8 = 1


@dataclass(frozen=True)
class Voice:
    base: str
    variant: str
    rate_wpm: int
    pitch: int

    @property
    def name(self) -> str:
        """Stable identifier used in manifests and for the by-voice split."""
        return f"{self.base}+{self.variant}@{self.rate_wpm}wpm/p{self.pitch}"


def data_path() -> Path:
    import espeakng_loader
    return Path(espeakng_loader.get_data_path())


def available_variants() -> list[str]:
    """Variant file names in the shipped data (voices/!v), sorted."""
    vdir = data_path() / "voices" / "!v"
    return sorted(p.name for p in vdir.iterdir() if p.is_file())


_CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                  ctypes.c_void_p)


class Synthesizer:
    """The per-process eSpeak NG instance. Use `get_synthesizer()` rather than constructing twice."""

    def __init__(self, lib_path: str | None = None):
        import espeakng_loader
        self._lib = ctypes.CDLL(lib_path or espeakng_loader.get_library_path())
        lib = self._lib
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        # The path argument is the directory that *contains* espeak-ng-data.
        parent = str(Path(espeakng_loader.get_data_path()).parent).encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 500, parent, 0)
        if rate != SYNTH_RATE_HZ:
            raise RuntimeError(f"espeak_Initialize returned {rate}, expected {SYNTH_RATE_HZ} Hz")
        self._chunks: list[np.ndarray] = []

        def _collect(wav, n, _events):
            if wav and n > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._callback = _CALLBACK_TYPE(_collect)  # kept referenced: C holds only the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._variants = set(available_variants())

    def synth(self, text: str, voice: Voice) -> np.ndarray:
        """float32 samples in [-1, 1] at SYNTH_RATE_HZ, leading/trailing silence trimmed."""
        if voice.variant not in self._variants:
            raise ValueError(f"unknown eSpeak variant {voice.variant!r} (see voices/!v)")
        if voice.base not in ENGLISH_BASES:
            raise ValueError(f"unsupported base voice {voice.base!r}; allowed: {ENGLISH_BASES}")
        lib = self._lib
        if lib.espeak_SetVoiceByName(f"{voice.base}+{voice.variant}".encode()) != 0:
            raise RuntimeError(f"eSpeak could not load voice {voice.base}+{voice.variant}")
        # Parameters are reset by SetVoiceByName, so set them after it.
        lib.espeak_SetParameter(_ESPEAK_RATE, int(voice.rate_wpm), 0)
        lib.espeak_SetParameter(_ESPEAK_PITCH, int(voice.pitch), 0)
        self._chunks = []
        data = text.encode() + b"\0"
        err = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed with code {err} on {text!r}")
        lib.espeak_Synchronize()
        if not self._chunks:
            return np.zeros(0, np.float32)
        x = np.concatenate(self._chunks).astype(np.float32) / 32768.0
        return trim_silence(x)

    def close(self) -> None:
        """Terminate the library and unload it (for a private copy; see `reset`)."""
        import _ctypes
        self._lib.espeak_Terminate()
        _ctypes.dlclose(self._lib._handle)


def trim_silence(x: np.ndarray, threshold: float = 1e-3, pad: int = 1100) -> np.ndarray:
    """Cut leading/trailing near-silence but keep `pad` samples (50 ms at 22.05 kHz) of margin."""
    idx = np.flatnonzero(np.abs(x) > threshold)
    if idx.size == 0:
        return x[:0]
    return x[max(0, idx[0] - pad): idx[-1] + 1 + pad]


_SYNTH: Synthesizer | None = None
_SYNTH_PID: int | None = None


def get_synthesizer() -> Synthesizer:
    """The one synthesizer of this process (re-created after a fork)."""
    global _SYNTH, _SYNTH_PID
    if _SYNTH is None or _SYNTH_PID != os.getpid():
        _SYNTH = Synthesizer()
        _SYNTH_PID = os.getpid()
    return _SYNTH


def reset() -> None:
    """Start this process's synthesizer from the state of a fresh process (see the module doc).

    dlopen returns the already-loaded library for a path it has seen, so each reset loads a
    copy under a new name; the copy's file is deleted once mapped and the previous copy is
    unloaded, so resets do not accumulate.
    """
    global _SYNTH, _SYNTH_PID, _RESETS
    import shutil
    import tempfile
    import espeakng_loader
    old = _SYNTH if _SYNTH_PID == os.getpid() else None
    _RESETS += 1
    with tempfile.TemporaryDirectory(prefix="azsim-espeak-") as tmp:
        path = Path(tmp) / f"libespeak-ng-{os.getpid()}-{_RESETS}.so"
        shutil.copyfile(espeakng_loader.get_library_path(), path)
        fresh = Synthesizer(str(path))
    if old is not None and old._lib._name != espeakng_loader.get_library_path():
        old.close()
    # The library also calls libc's rand() (seeding it changes the output, measured), whose
    # state lives in libc, not in the copy: seed it as a fresh process starts (glibc's default).
    ctypes.CDLL(None).srand(1)
    _SYNTH, _SYNTH_PID = fresh, os.getpid()


_RESETS = 0


def synthesize(text: str, voice: Voice) -> np.ndarray:
    return get_synthesizer().synth(text, voice)


# Variants that sound like robots/whispers/effects rather than a person: kept out of the pools
# so that the recognizer is trained and tested on speech-like voices.
_ODD_VARIANTS = {"Demonic", "UniRobot", "anikaRobot", "croak", "whisper", "whisperf", "Tweaky",
                 "robosoft", "robosoft2", "robosoft3", "robosoft4", "robosoft5", "robosoft6",
                 "robosoft7", "robosoft8", "Mr serious", "fast"}


@lru_cache(maxsize=1)
def unstable_variants() -> frozenset[str]:
    """Variants whose output can differ between processes (those with a `breath` line)."""
    vdir = data_path() / "voices" / "!v"
    return frozenset(p.name for p in vdir.iterdir() if p.is_file() and any(
        line.split()[:1] == ["breath"] for line in p.read_text(errors="replace").splitlines()))


def speech_like_variants() -> list[str]:
    return [v for v in available_variants() if v not in _ODD_VARIANTS and " " not in v]
