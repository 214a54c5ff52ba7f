"""The HTTP service: JSON API for point-of-sale, web form for staff, and the quote ledger.

A serving worker stays lean (issue 15): it imports neither scikit-learn, scipy, pandas, pyarrow
nor matplotlib, nor numba and LLVM (the kernels are compiled ahead of time: `models.kernels`),
nor Alembic while the ledger is migrated (`service.database.migrate_schema`)
(`tests/service/test_lean_worker.py`).
"""
