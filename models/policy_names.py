"""The names of the buffer policies, in a module light enough for the command line.

`promise train --policy` and `promise backtest --policy` list these as their choices and refuse
another name before any data is read. `models.policies` maps each name to its class (and needs
scikit-learn, which a serving worker that re-imports the command line must not load);
`tests/test_cli_one_app.py` checks the two name the same policies.
"""

from __future__ import annotations

from enum import StrEnum


class PolicyName(StrEnum):
    """A buffer policy's name (DESIGN.md, "Buffer policies")."""

    FIXED = "fixed"
    PROPORTIONAL = "proportional"
    QUANTILE = "quantile"
    CONFORMAL = "conformal"
    ADAPTIVE = "adaptive"


POLICY_NAMES: tuple[str, ...] = tuple(name.value for name in PolicyName)
