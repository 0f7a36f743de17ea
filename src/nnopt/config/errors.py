"""The one error type of configuration problems, and the helpers its messages use.

Apart from `nnopt.config.spec` so that modules the spec itself calls (plug-in lookup) can raise
it without importing the spec.
"""

from __future__ import annotations

import difflib
import reprlib
from typing import Any

__all__ = ["SpecError", "did_you_mean", "refuse_unknown_keys", "short_repr"]


class SpecError(ValueError):
    """A spec or config value is wrong; the message names the key path and what is allowed."""


def did_you_mean(word: str, options: Any) -> str:
    """' (did you mean 'x'?)' when a close option exists, else ''."""
    if not isinstance(word, str):  # str() of a YAML alias bomb would never finish
        return ""
    by_case = {str(o).lower(): str(o) for o in options}
    if word.lower() in by_case:  # 'ReLU' -> 'relu'
        return f" (did you mean '{by_case[word.lower()]}'?)"
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def refuse_unknown_keys(
    path: str, keys: Any, allowed: Any, *, what: str = "unknown key"
) -> None:
    """Raise '{path}.{key}: unknown key; allowed: ...' for the first key not in `allowed`."""
    for key in keys:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            raise SpecError(
                f"{where}: {what}; allowed: {', '.join(allowed)}" + did_you_mean(key, allowed)
            )


# Error messages quote the offending value; a bounded repr keeps a huge or alias-expanded
# value (a YAML "billion laughs" list) from filling memory while the message is built.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 2, 4, 4
_REPR.maxstring, _REPR.maxother = 80, 80


def short_repr(value: Any) -> str:
    """repr() cut to a readable size, safe on deeply shared nested lists."""
    return _REPR.repr(value)
