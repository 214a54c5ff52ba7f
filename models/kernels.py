"""The compiled kernels: `models.tree_loops` and `models.calendar_loops` built ahead of time.

A serving worker must not carry a compiler: numba's JIT needs LLVM in every process that runs a
kernel (~90 MiB of `libllvmlite.so`, ~0.5 s of imports and ~0.3 s to load its cached kernels).
So the loops' source is compiled once into a native module by numba.pycc, for this CPU (`host`)
and with wrappers that release the GIL (the batch path predicts on one core while it encodes
on the other, and `on_cores` splits a large batch across the cores). Every process loads that
module, and numba is imported only to build it.

The module lives in `models/__pycache__` (else `$XDG_CACHE_HOME/promise`, `~/.cache/promise`),
named by a hash of the loops' source, this file, Python's, numpy's, numba's and llvmlite's
versions, the `NUMBA_*` settings and the CPU's flags: any change builds a new one. The first process that imports this module and
finds none builds it (~15-20 s; under a file lock, so processes starting together build it
once): `promise serve` imports it before it starts its workers. Where no folder is writable it
is built into a temporary one for this process.

The compiled functions trust their arguments: they read memory as their signatures say
(C-contiguous arrays of the dtypes below, no bounds checks, as numba's loops did). Their
callers (`models.calendar`, `models.fast`) pass arrays they made or converted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.machinery
import importlib.util
import itertools
import os
import sys
import tempfile
import types
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models import calendar_loops, tree_loops

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

NAME = "promise_kernels"
HERE = Path(__file__).resolve().parent
SOURCES = (HERE / "tree_loops.py", HERE / "calendar_loops.py", Path(__file__).resolve())
# A batch gets one thread per this many rows (up to the cores): ~10 ms of work each.
_ROWS_PER_THREAD = 10_000

# Exported name: (source module, function, signature). Signature letters: d float64, q int64,
# and arrays as (dtype, dimensions, read-only); every array C-contiguous.
_F8_1, _F8_2 = ("f8", 1, False), ("f8", 2, False)
_TABLE = ("f8", 2, True)  # the calendar's day table and zone segments (read-only)
_CALENDAR = (_TABLE, _TABLE, "q", "d", "d")  # days, zone, day0, low, high
_EXPORTS: dict[str, tuple[types.ModuleType, str, tuple[Any, ...], Any]] = {
    **{
        f"mask_rows_{word}": (
            tree_loops,
            "_mask_rows",
            (_F8_2, ("i8", 2, True), ("f8", 1, True), (word, 2, True), ("f8", 2, True), "d", _F8_1),
            None,
        )
        for word in ("u4", "u8")
    },
    "walk_rows": (
        tree_loops,
        "_walk_rows",
        (_F8_2, ("i4", 2, True), ("f8", 1, True), ("i8", 2, True), ("i4", 1, True), "d", _F8_1),
        None,
    ),
    "clock_starts": (calendar_loops, "_clock_starts", (_F8_1, *_CALENDAR, _F8_1), "q"),
    "local_parts_into": (
        calendar_loops,
        "_local_parts_into",
        (_F8_1, *_CALENDAR, _F8_2, "q"),
        "q",
    ),
    "day_numbers": (calendar_loops, "_day_numbers", (_F8_1, *_CALENDAR, ("i8", 1, False)), "q"),
    "deadlines": (
        calendar_loops,
        "_deadlines",
        (_F8_1, *_CALENDAR, "d", _F8_1, ("i8", 1, False)),
        "q",
    ),
    "lengths": (calendar_loops, "_lengths", (_F8_1, _F8_1, *_CALENDAR, "d", _F8_1), "q"),
    "promises": (
        calendar_loops,
        "_promises",
        (*(_F8_1,) * 4, *_CALENDAR, "d", "d", _F8_1, _F8_1, ("i8", 1, False), ("b1", 1, False)),
        "q",
    ),
}


# --------------------------------------------------------------------------- loading


def build_key() -> str:
    """What names one build: the hash of everything that changes its machine code."""
    digest = hashlib.sha256()
    for path in SOURCES:
        digest.update(path.read_bytes())
    numba_settings = sorted((k, v) for k, v in os.environ.items() if k.startswith("NUMBA_"))
    digest.update(
        f"{sys.version}|{np.__version__}|{version('numba')}|{version('llvmlite')}|"
        f"{numba_settings}|{_cpu()}".encode()
    )
    return digest.hexdigest()[:20]


def _cpu() -> str:
    """The CPU's model and flags (a module built for `host` may use any of them)."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        wanted = [line for line in info if line.startswith(("model name", "flags"))]
        return "".join(wanted[:2])
    return os.uname().machine


def folders() -> list[Path]:
    """Where a built module is looked for, in order, and the first writable one gets it."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return [HERE / "__pycache__", cache / "promise"]


def module_path(folder: Path, key: str) -> Path:
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    return folder / f"{NAME}-{key}{suffix}"


def load() -> types.ModuleType:
    """The compiled kernels, built first if no folder holds this source's build."""
    key = build_key()
    for folder in folders():
        path = module_path(folder, key)
        if path.exists():
            return _import(path)
    for folder in folders():
        with _locked(folder) as locked:
            if not locked:
                continue
            path = module_path(folder, key)
            if not path.exists():  # another process may have built it while we waited
                build(folder, key)
            return _import(path)
    with tempfile.TemporaryDirectory(prefix="promise-kernels-") as scratch:
        # Nowhere to keep it: built for this process only (a loaded module may be deleted).
        build(Path(scratch), key)
        return _import(module_path(Path(scratch), key))


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[bool]:
    """An exclusive lock of `folder`'s build (False: the folder cannot be written)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = (folder / f"{NAME}.lock").open("a")
    except OSError:
        yield False
        return
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _import(path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(NAME, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the compiled kernels at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- building


def build(folder: Path, key: str) -> Path:
    """Compile the loops into `folder` (numba.pycc; imports numba in this process); in this
    checkout's own folder, removes the builds of other keys. Returns the module's path;
    raises ImportError naming what the build needs when it fails."""
    path = module_path(folder, key)
    with warnings.catch_warnings(), tempfile.TemporaryDirectory(dir=folder) as scratch:
        warnings.simplefilter("ignore")  # numba.pycc's pending deprecation, numba's notes
        try:
            _compile(Path(scratch), path.name)
        except Exception as err:  # a missing C compiler, most often: say what is needed
            raise ImportError(
                f"cannot build the compiled kernels into {folder} (numba.pycc needs numba, "
                f"setuptools and a C compiler such as gcc): {type(err).__name__}: {err}"
            ) from err
        os.replace(Path(scratch) / path.name, path)  # whole: no process sees half a module
    if folder != HERE / "__pycache__":  # a shared cache may hold other checkouts' builds
        return path
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    for stale in folder.glob(f"{NAME}-*{suffix}"):
        if stale != path:
            stale.unlink(missing_ok=True)
    return path


def _compile(folder: Path, file_name: str) -> None:
    numba_types: Any = importlib.import_module("numba.core.types")
    numpy_support: Any = importlib.import_module("numba.np.numpy_support")
    pycc: Any = importlib.import_module("numba.pycc")
    compiler: Any = importlib.import_module("numba.pycc.compiler")
    scalars = {"d": numba_types.float64, "q": numba_types.int64, None: numba_types.void}

    def typed(arg: Any) -> Any:
        if isinstance(arg, tuple):
            dtype, ndim, readonly = arg
            item = numpy_support.from_dtype(np.dtype(dtype))
            return numba_types.Array(item, ndim, "C", readonly=readonly)
        return scalars[arg]

    compiled = pycc.CC(NAME)
    compiled.output_dir = str(folder)
    compiled.output_file = file_name
    compiled.target_cpu = "host"
    compiled.verbose = False
    sources = {module: _jitted(module) for module in (tree_loops, calendar_loops)}
    for name, (module, function, args, result) in _EXPORTS.items():
        signature = typed(result)(*(typed(arg) for arg in args))
        compiled.export(name, signature)(sources[module][function])
    original = compiler.Flags
    compiler.Flags = _releasing_gil(original)  # pycc offers no nogil option of its own
    try:
        compiled.compile()
    finally:
        compiler.Flags = original


def _jitted(module: types.ModuleType) -> dict[str, Any]:
    """The module's functions, each a plain copy (to export) and its numba dispatcher (for
    the others to call), resolved in a namespace of their own: the module is left as it is."""
    import numba

    space = dict(vars(module))
    plain = {}
    for name, value in vars(module).items():
        if isinstance(value, types.FunctionType) and value.__module__ == module.__name__:
            copy = types.FunctionType(value.__code__, space, name, value.__defaults__)
            plain[name] = copy
            space[name] = numba.njit(copy)
    return plain


def _releasing_gil(flags: Any) -> Any:
    """numba's compiler flags with `release_gil` set: pycc's wrappers then release the GIL
    around each call, as `@njit(nogil=True)`'s do (a test checks the built module)."""

    class ReleasingGil(flags):  # type: ignore[misc]  # a class numba does not type
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.release_gil = True

    return ReleasingGil


_compiled = load()


# --------------------------------------------------------------------------- the kernels

_MASK_ROWS = {
    np.dtype(np.uint32): _compiled.mask_rows_u4,
    np.dtype(np.uint64): _compiled.mask_rows_u8,
}
walk_rows: Callable[..., None] = _compiled.walk_rows
clock_starts: Callable[..., int] = _compiled.clock_starts
local_parts_into: Callable[..., int] = _compiled.local_parts_into
day_numbers: Callable[..., int] = _compiled.day_numbers
deadlines: Callable[..., int] = _compiled.deadlines
lengths: Callable[..., int] = _compiled.lengths
promises: Callable[..., int] = _compiled.promises


def mask_rows(
    rows: FloatArray,
    features: IntArray,
    edges: FloatArray,
    masks: NDArray[Any],
    leaf_values: FloatArray,
    baseline: float,
    out: FloatArray,
) -> None:
    """`tree_loops._mask_rows` for masks of 32- or 64-bit words."""
    _MASK_ROWS[masks.dtype](rows, features, edges, masks, leaf_values, baseline, out)


# --------------------------------------------------------------------------- threads


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


def on_cores(
    kernel: Callable[[FloatArray, FloatArray], None], rows: FloatArray, out: FloatArray
) -> None:
    """`kernel(rows, out)` over consecutive slices of the rows, one thread per core this process
    may run on (the kernels release the GIL; each slice writes only its part of `out`). Batches
    under `_ROWS_PER_THREAD` rows a core run in the calling thread: a thread costs ~0.1 ms."""
    n = rows.shape[0]
    if n < 2 * _ROWS_PER_THREAD:  # one thread in any case: no affinity call
        kernel(rows, out)
        return
    threads = min(usable_cores(), n // _ROWS_PER_THREAD)
    if threads <= 1:
        kernel(rows, out)
        return
    bounds = np.linspace(0, n, threads + 1).astype(int).tolist()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        parts = [
            pool.submit(kernel, rows[start:stop], out[start:stop])
            for start, stop in itertools.pairwise(bounds)
        ]
        for part in parts:
            part.result()  # re-raises what a thread raised
