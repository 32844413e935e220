"""Errors a user can cause. The CLI prints them as one line and exits with status 2.

Every message names the file (when there is one), the field and the allowed range.
"""


class AzsimError(Exception):
    """Base of all user-facing errors."""


class ConfigError(AzsimError, ValueError):
    """A hardware config, preset, recipe or spec value outside its allowed range."""


class FormatError(AzsimError, ValueError):
    """A compressed weight stream that is malformed or truncated."""


class AudioError(AzsimError, ValueError):
    """A WAV file that cannot be used (missing, not a WAV, empty, unsupported rate...)."""


class ModelError(AzsimError, ValueError):
    """A model file that is missing, corrupt, or does not match the expected layout."""
