"""modeq.proofs: derivation documents (LaTeX/PDF) and the ``modeq`` command line."""
