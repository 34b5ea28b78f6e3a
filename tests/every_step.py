"""The oracle of the periodic-start and stationary hand-over tests: a compiled field with its
shortcut past the transient removed."""


def tables_only(field):
    """The same field without its stationary limit (full batch) or its periodic start (mini
    batch): every step by the node tables."""
    out = object.__new__(type(field))
    out.__dict__.update(field.__dict__)
    out.limit = None
    return out
