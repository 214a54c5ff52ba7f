"""The HTTP service: JSON API for point-of-sale, web form for staff, and the quote ledger.

A serving worker stays lean (issue 15): it imports neither scikit-learn, scipy, pandas, pyarrow
nor matplotlib (`tests/service/test_lean_worker.py`). numba imports scipy when it can: its
`__init__` to check scipy's version, and `numba.np.arraymath` (loaded with the first kernel) to
look for scipy's BLAS, which only `np.dot`-like functions inside kernels need. Ours use none, so
the service imports both first with scipy hidden (a `None` in `sys.modules` makes `import scipy`
fail, as the import system documents); a kernel that did need BLAS would fail to compile, and
the service tests quote through every kernel. Where scipy or numba is loaded already (training,
the CLI) nothing changes.
"""

import sys


def _import_numba_without_scipy() -> None:
    if "numba" in sys.modules or "scipy" in sys.modules:
        return
    sys.modules["scipy"] = None  # type: ignore[assignment]  # None: "import scipy" fails
    try:
        import numba  # loaded now, without scipy, for models.tree_loops
        import numba.np.arraymath  # noqa: F401  # its BLAS check, which imports scipy
    finally:
        del sys.modules["scipy"]


_import_numba_without_scipy()
