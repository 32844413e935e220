"""Reading TOML files at the edge, with errors that name the file."""
from __future__ import annotations

import tomllib
from pathlib import Path

from azsim.errors import ConfigError


def read_toml(path, what: str = "config") -> dict:
    """The parsed file. ConfigError says `<path>: <what> file not found` or why it is not TOML
    (including bytes that are not UTF-8, which tomllib reports as a decode error)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} file not found")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
