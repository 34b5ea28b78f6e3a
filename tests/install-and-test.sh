#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian/Ubuntu machine, then run it all
# (unit tests, numerical studies, LaTeX documents, notebooks).  The README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v pdflatex >/dev/null || ! command -v latexmk >/dev/null \
    || ! command -v pdftotext >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends texlive-latex-base \
    texlive-latex-recommended latexmk poppler-utils
fi
python -m pip install --quiet torch==2.13.0
python -m pip install --quiet -e ".[test]"
export MPLBACKEND=Agg
# SymPy's expression cache (LRU, 1000 entries by default) holds a derivation's repeated
# sub-results; at 100000 entries the derivations run ~15% faster (memory ~1 GB per worker)
export SYMPY_CACHE_SIZE="${SYMPY_CACHE_SIZE:-100000}"
# two workers: the machines have two cores; a module marked xdist_group stays on one worker
python -m pytest -n 2 --dist loadgroup --nbmake tests notebooks "$@"
