"""Subcommands of the ``modeq`` command line, one module each (see ``modeq.proofs.cli``)."""
