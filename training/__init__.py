"""Data loading, training, back-testing, reports and the `promise` command line.

Importing it sets `OMP_WAIT_POLICY=PASSIVE` for the OpenMP runtime that scikit-learn's booster
loads, unless the environment already chooses one: OpenMP threads otherwise spin while they
wait, and on a host whose cores are busy with other work (a shared machine, the back-test's own
worker processes) that spinning made a 300,000-order fit about 10x slower (28 s against 2.6 s
at load average 8, `bench/omp_wait.py`). It must be set before the runtime loads, so here,
before any training module imports scikit-learn; the back-test's worker processes inherit it.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
