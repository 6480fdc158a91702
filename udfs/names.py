"""Model names, aliases, versions and references: one ASCII grammar, checked before a name becomes a path or SQL.

    mortgage_deny            the model's `prod` alias
    mortgage_deny@candidate  an alias
    mortgage_deny@3          a pinned version

A model name is also a folder of the registry and part of the SQL function predict_<name>, so it is
held to lower-case ASCII letters, digits and underscores; nothing that could climb out of the
registry (`/`, `..`, NUL) or read differently in SQL gets through.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import ModelNotFound

DEFAULT_ALIAS = "prod"
MAX_REFERENCE_LENGTH = 200
MODEL_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
ALIAS_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")
VERSION = re.compile(r"[1-9][0-9]{0,8}")
# `predict_label` and `predict_proba` are generic SQL functions; a model may not shadow them.
RESERVED_NAMES = frozenset({"label", "proba", "json"})

NAME_RULE = "a model name is lower-case ASCII letters, digits and _ starting with a letter (at most 63)"
GRAMMAR = (
    f"{NAME_RULE}, an alias starts with a letter and holds ASCII letters, digits, _ or - (at most 63), "
    "a version is a number; e.g. mortgage_deny, mortgage_deny@candidate, mortgage_deny@3"
)


class InvalidReference(ModelNotFound):
    """A reference or name outside the grammar: refused before it is looked up anywhere."""


def shown(text: object, limit: int = 60) -> str:
    """A name as an error message may print it: ASCII, escaped, cut at `limit` characters."""
    text = str(text)
    cut = text[:limit] + ("…" if len(text) > limit else "")
    return ascii(cut)[1:-1].replace("\\u2026", "…")


_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: object) -> str:
    """Free text (a reason, a user) as one printed line: newlines and other control characters escaped."""
    return _CONTROL.sub(lambda m: _ESCAPES.get(m.group(), f"\\u{ord(m.group()):04x}"), str(text))


def listed(names: Iterable[object], limit: int = 10) -> str:
    """Names as a one-line error message lists them: the first `limit`, each shown, then how many more."""
    names = list(names)
    more = len(names) - limit
    return ", ".join(shown(name) for name in names[:limit]) + (f" and {more:,} more" if more > 0 else "")


def is_model_name(name: object) -> bool:
    return isinstance(name, str) and bool(MODEL_NAME.fullmatch(name)) and name not in RESERVED_NAMES


def is_alias(alias: object) -> bool:
    return isinstance(alias, str) and bool(ALIAS_NAME.fullmatch(alias))


def check_model_name(name: object) -> str:
    """Return `name` if it is a valid model name, else fail naming the rule."""
    if not is_model_name(name):
        reserved = f" and not one of {sorted(RESERVED_NAMES)}" if name in RESERVED_NAMES else ""
        raise InvalidReference(f"Model name '{shown(name)}' is not valid{reserved}: {GRAMMAR}")
    return name  # type: ignore[return-value]


def check_alias(alias: object) -> str:
    if not is_alias(alias):
        raise InvalidReference(f"Alias '{shown(alias)}' is not valid: {GRAMMAR}")
    return alias  # type: ignore[return-value]


def check_version(version: object) -> int:
    """Return a version number (an int, or ASCII digits), else fail."""
    if isinstance(version, bool) or not (
        isinstance(version, int) and version > 0 or isinstance(version, str) and VERSION.fullmatch(version)
    ):
        raise InvalidReference(f"Version '{shown(version)}' is not valid: {GRAMMAR}")
    return int(version)


@dataclass(frozen=True, slots=True)
class ModelRef:
    """`name`, `name@alias` or `name@<version number>`; a bare name means the `prod` alias."""

    name: str
    alias: str | None = None
    version: int | None = None

    @classmethod
    def parse(cls, text: object) -> ModelRef:
        """Parse and validate a reference; a bad one fails in one line saying what is allowed."""
        if not isinstance(text, str) or len(text) > MAX_REFERENCE_LENGTH:
            size = f" ({len(text)} characters; at most {MAX_REFERENCE_LENGTH})" if isinstance(text, str) else ""
            raise InvalidReference(f"Model reference '{shown(text)}' is not valid{size}: {GRAMMAR}")
        name, at, selector = text.partition("@")
        if not name:
            raise InvalidReference(f"Model reference '{shown(text)}' has no model name: {GRAMMAR}")
        if not is_model_name(name) or (at and not (VERSION.fullmatch(selector) or is_alias(selector))):
            raise InvalidReference(f"Model reference '{shown(text)}' is not valid: {GRAMMAR}")
        if not at:
            return cls(name, alias=DEFAULT_ALIAS)
        if VERSION.fullmatch(selector):
            return cls(name, version=int(selector))
        return cls(name, alias=selector)

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        return self.name if self.alias == DEFAULT_ALIAS else f"{self.name}@{self.alias}"
