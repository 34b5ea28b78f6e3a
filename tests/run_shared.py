"""Test helper: a value computed once per test run and shared by pytest-xdist's workers."""
import fcntl
import os
import pickle


def once_per_run(tmp_path_factory, name, make):
    """``make()`` computed once per test run and shared by xdist's workers: the first worker
    to take the lock computes and pickles it into the run's temporary root, the others wait
    and read it.  Without workers (one process) it is simply ``make()``.

    ``--dist loadgroup`` keeps a marked module's tests on one worker, but an xdist that does
    not know the pytest it runs under may lose the groups silently (xdist 3.8 under pytest
    9.2 did): a session fixture would then be built by both workers.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return make()
    root = tmp_path_factory.getbasetemp().parent        # shared by this run's workers only
    path = root / f"{name}.pickle"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return pickle.loads(path.read_bytes())
        value = make()
        partial = root / f"{name}.pickle.partial"
        partial.write_bytes(pickle.dumps(value))
        os.replace(partial, path)
        return value
