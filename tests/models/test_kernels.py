"""`models.kernels`: the loops compiled ahead of time release the GIL, load without numba or
LLVM, are rebuilt when their source changes, and are handed only arrays they can read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models import kernels
from tests.models.test_fast import calendar_for

ROOT = Path(__file__).resolve().parents[2]
# A fresh process: trains a small booster, compiles its trees, quotes through the calendar.
QUOTING = """
import json, sys
import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from tests.models.test_fast import calendar_for
from models.tree_compiler import compile_trees
rng = np.random.default_rng(0)
x = rng.normal(size=(500, 3))
booster = HistGradientBoostingRegressor(max_iter=20).fit(x, x[:, 0] + rng.normal(size=500))
trees = compile_trees(booster, "identity")
assert np.array_equal(trees.predict_raw(x), booster._raw_predict(x).ravel())
calendar_for("Europe/London", 16).clock_starts(np.array([1.7e9, 1.71e9]))
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & {"numba", "llvmlite"})))
"""


def test_a_process_that_predicts_and_quotes_loads_neither_numba_nor_llvm() -> None:
    ran = subprocess.run(
        [sys.executable, "-c", QUOTING], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(ran.stdout) == []


def test_the_compiled_module_releases_the_gil() -> None:
    # pycc's wrappers hold the GIL unless built with release_gil: then each call goes through
    # PyEval_SaveThread / PyEval_RestoreThread, which the module must import.
    path = Path(str(kernels._compiled.__file__))
    binary = path.read_bytes()
    assert b"PyEval_SaveThread" in binary and b"PyEval_RestoreThread" in binary


def test_the_build_key_follows_the_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copies = []
    for source in kernels.SOURCES:
        copy = tmp_path / source.name
        copy.write_bytes(source.read_bytes())
        copies.append(copy)
    monkeypatch.setattr(kernels, "SOURCES", tuple(copies))
    first = kernels.build_key()
    assert kernels.build_key() == first
    copies[1].write_text(copies[1].read_text() + "\n# a changed loop\n")
    assert kernels.build_key() != first


def test_a_folder_that_cannot_be_written_is_passed_over(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with kernels._locked(blocker / "cache") as locked:
        assert not locked
    with kernels._locked(tmp_path / "cache") as locked:
        assert locked


def test_the_calendar_converts_what_the_kernels_read() -> None:
    calendar = calendar_for("Europe/London", 16)
    at = np.array([1.70e9, 1.71e9, 1.72e9, 1.73e9])
    floats = calendar.promises(at, at, np.full(4, 30.0), np.full(4, 5.0), "day", None)
    strided = np.repeat(at, 2)[::2]  # not contiguous: read as such, it would be other times
    ints = calendar.promises(
        strided.astype(np.int64), strided, np.full(4, 30), np.full(4, 5), "day", None
    )
    for a, b in zip(floats, ints, strict=True):
        assert np.array_equal(a, b)
    matrix = np.zeros((4, 7))
    calendar.local_parts_into(strided, matrix, 2)
    assert np.array_equal(matrix[:, 2:], calendar.local_parts(at).values)
    read_only = np.zeros((4, 7))
    read_only.flags.writeable = False
    for out, column in (
        (np.zeros((7, 4)).T, 0),
        (np.zeros((4, 6)), 2),
        (np.zeros((3, 7)), 0),
        (read_only, 0),
    ):
        with pytest.raises(ValueError, match="no room"):
            calendar.local_parts_into(at, out, column)
    with pytest.raises(ValueError, match="expected 4 values"):
        calendar.promise_lengths(at, at[:1], "day")  # the kernel would read past its end


def test_a_build_without_a_c_compiler_says_what_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CC", str(tmp_path / "no-such-gcc"))
    with pytest.raises(ImportError, match="a C compiler such as gcc"):
        kernels.build(tmp_path, "test")
    assert list(tmp_path.glob(f"{kernels.NAME}-*")) == []
