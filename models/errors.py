"""Errors for user mistakes, one hierarchy for the whole engine.

```
PromiseError
├── SpecError    bad spec or data: names the file, row and column
├── InputError   unknown category, out of range, naive time
├── NotFound     unknown quote id or model version
├── BundleError  hash mismatch, missing manifest, incompatible library
├── NoRiskModel  an engine trained before open-order risks were kept: retrain it
└── SettingsError  a bad setting or command-line option, or a database it names is unreachable
```

The service maps `NotFound` to 404, `NoRiskModel` to 409 and the rest to 422 (`BundleError`
at start-up makes the service not ready); the command line prints one red line and exits 1
(`SettingsError` comes from the command line and the server's start-up checks only).
Anything that is not a `PromiseError` is a bug and propagates.
"""

from __future__ import annotations


class PromiseError(Exception):
    """Base class of every error a user can cause and fix."""


class SpecError(PromiseError):
    """A spec file or the order table it names is wrong."""


class InputError(PromiseError):
    """An order sent for a quote is wrong; `field` names the offending field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(PromiseError):
    """An unknown quote id or model version."""


class BundleError(PromiseError):
    """A model bundle cannot be trusted or loaded."""


class NoRiskModel(PromiseError):
    """The engine was trained before risk distributions were kept: retrain to use them."""


class SettingsError(PromiseError):
    """A setting (PROMISE_*) or command-line option is wrong, or what it names cannot be used:
    an unreachable database, a port in use, a public address without keys."""
