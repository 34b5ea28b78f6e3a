"""Run every benchmark of the project in one go: ``python benchmarks/run.py``.

Each ``bench_*.py`` here exposes ``main()`` and prints its figures (ratios measured side by
side in the same run)."""
from __future__ import annotations

import importlib.util
import pathlib
import sys
import time


def main(names=None):
    here = pathlib.Path(__file__).parent
    for path in sorted(here.glob("bench_*.py")):
        if names and path.stem not in names:
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        t = time.perf_counter()
        print(f"\n##### {path.stem}")
        module.main()
        print(f"##### {path.stem}: {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:] or None)
