"""Training asks OpenMP's threads to sleep while they wait (`training/__init__.py`), before
scikit-learn loads the runtime, and leaves a policy the environment chose alone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.service.conftest import ROOT

PROBE = "import os, training.train, sklearn.ensemble; print(os.environ.get('OMP_WAIT_POLICY'))"


@pytest.mark.parametrize(("chosen", "seen"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_training_sets_the_wait_policy_unless_chosen(chosen: str | None, seen: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if chosen is not None:
        env["OMP_WAIT_POLICY"] = chosen
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == seen
