"""One BLAS/OpenMP thread per process: workers run one per core."""

import os

SINGLE_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def single_threaded_math() -> None:
    """Ask BLAS/OpenMP for one thread per process (unless the user set otherwise).

    Workers run one per core; threaded BLAS inside each made scipy fits ~10x slower here.
    Must run before numpy is imported in the process it is meant for (or before spawning).
    """
    for name in SINGLE_THREAD_ENV:
        os.environ.setdefault(name, "1")
