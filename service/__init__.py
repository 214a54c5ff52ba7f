"""The HTTP service: JSON API for point-of-sale, web form for staff, and the quote ledger.

A serving worker stays lean (issue 15): it imports neither scikit-learn, scipy, pandas, pyarrow
nor matplotlib (`tests/service/test_lean_worker.py`). numba's `__init__` imports scipy when it
can, only to check its version; our kernels use nothing of scipy, so the service imports numba
first with scipy hidden (a `None` in `sys.modules` makes `import scipy` fail, as documented for
the import system). Where scipy or numba is loaded already (training, the CLI) nothing changes.
"""

import sys


def _import_numba_without_scipy() -> None:
    if "numba" in sys.modules or "scipy" in sys.modules:
        return
    sys.modules["scipy"] = None  # type: ignore[assignment]  # None: "import scipy" fails
    try:
        import numba  # noqa: F401  # loaded now, without scipy, for models.tree_loops
    finally:
        del sys.modules["scipy"]


_import_numba_without_scipy()
