"""Text normalization and the character vocabulary shared by data, model and decoders.

Token 0 is the RNN-T blank. Digits are spelled out as words by the grammar, so the
output alphabet is just lowercase letters, apostrophe and space.
"""
from __future__ import annotations

import re

BLANK = 0
VOCAB: tuple[str, ...] = ("<blank>", " ", "'") + tuple("abcdefghijklmnopqrstuvwxyz")
VOCAB_SIZE = len(VOCAB)
_INDEX = {ch: i for i, ch in enumerate(VOCAB) if i != BLANK}

_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def normalize(text: str) -> str:
    """Lowercase, spell out single digits, drop characters outside the vocabulary, squeeze spaces."""
    text = text.lower()
    text = re.sub(r"\d", lambda m: f" {_DIGIT_WORDS[int(m.group())]} ", text)
    text = re.sub(r"[^a-z' ]+", " ", text)
    return re.sub(r" +", " ", text).strip()


def encode(text: str) -> list[int]:
    """Token ids of normalized text. Raises ValueError on characters outside the vocabulary."""
    try:
        return [_INDEX[ch] for ch in text]
    except KeyError as err:
        raise ValueError(f"character {err.args[0]!r} in {text!r} is outside the vocabulary "
                         f"(allowed: a-z, apostrophe, space); call asr.text.normalize first") from None


def decode(ids) -> str:
    """Text of token ids; blanks are skipped."""
    return "".join(VOCAB[i] for i in ids if i != BLANK)
