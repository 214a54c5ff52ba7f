"""The walk's refits trained ahead, in worker processes bounded by the cores.

A refit at a moment learns only from what was known then (`training.train.fit_model`), so the
models of every refit of every fold are independent of each other and of the walk; what is not
independent (the adaptive policy's control state, the watch over open orders, each
recalibration's reuse of the last refit) stays in the walk, which runs serially and takes the
models in time order. A worker trains the duration model alone and sends back the schema and the
booster (`lightened`); the walk rebuilds the fold around them with `fit_model(model_from=...)`,
which trains nothing, so every figure is the one a serial run computes.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType

import numpy as np
from threadpoolctl import threadpool_limits

from models.calendar import BusinessCalendar
from training.data import OrderTable
from training.spec import Spec
from training.train import FoldModel, fit_model

# What a worker process holds for its tasks: set once by `_hold` when the worker starts.
_WORK: dict[str, object] = {}


# Below this many orders a refit takes less than starting a worker process does.
PARALLEL_MIN_ORDERS = 200_000


def walk_workers(table: OrderTable, refits: int) -> int:
    """Worker processes for a walk's refits by default: one per core for a large table with
    several refits, else none (the walk trains them itself)."""
    if table.size < PARALLEL_MIN_ORDERS or refits < 2:
        return 0
    return os.cpu_count() or 1


class Refits:
    """The models of a walk's refits (`fit(start)`), trained ahead by `workers` processes when
    there are several, else trained on demand here."""

    def __init__(
        self,
        spec: Spec,
        table: OrderTable,
        calendar: BusinessCalendar,
        starts: Sequence[float],
        workers: int,
    ) -> None:
        self.spec = spec
        self.table = table
        self.calendar = calendar
        self._pool: ProcessPoolExecutor | None = None
        self._ahead: dict[float, Future[FoldModel]] = {}
        count = min(workers, os.cpu_count() or 1, len(starts))
        if count > 1:
            # Spawned, not forked: a fork of a process that has run OpenMP can hang in it.
            self._pool = ProcessPoolExecutor(
                max_workers=count,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_hold,
                initargs=(spec, table, calendar),
            )
            self._ahead = {start: self._pool.submit(_train, start) for start in starts}

    @property
    def parallel(self) -> bool:
        """Whether worker processes train the refits."""
        return self._pool is not None

    def fit(self, start: float) -> FoldModel:
        """The fold model refitted at `start`, as `fit_model` answers it."""
        ahead = self._ahead.pop(start, None)
        trained = None
        if ahead is not None:
            try:
                trained = ahead.result()
            except BrokenProcessPool:
                # The workers could not start (a script without an `if __name__ ==
                # "__main__":` guard is imported again by each): train here instead.
                self._ahead.clear()
        return fit_model(self.spec, self.table, self.calendar, start, trained)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Refits:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def lightened(fold: FoldModel) -> FoldModel:
    """The fold's schema and model without its per-order arrays (cheap to send back)."""
    none = np.zeros(0, dtype=np.intp)
    empty = np.zeros(0, dtype=np.float64)
    return dataclasses.replace(
        fold,
        known=fold.known.subset(none),
        matrix=np.zeros((0, fold.matrix.shape[1]), dtype=np.float64),
        hours=empty,
        done=np.zeros(0, dtype=bool),
        start_s=empty,
        train_mask=np.zeros(0, dtype=bool),
        cal_index=none,
        cal_expected_hours=empty,
    )


def _hold(spec: Spec, table: OrderTable, calendar: BusinessCalendar) -> None:
    _WORK.update(spec=spec, table=table, calendar=calendar)


def _train(start: float) -> FoldModel:
    spec, table, calendar = _WORK["spec"], _WORK["table"], _WORK["calendar"]
    assert isinstance(spec, Spec) and isinstance(table, OrderTable)
    assert isinstance(calendar, BusinessCalendar)
    # One thread each, as the walk runs: the workers already share the cores.
    with threadpool_limits(limits=1, user_api="openmp"):
        return lightened(fit_model(spec, table, calendar, start))
