"""``modeq cache info`` / ``modeq cache clear``: the on-disk derivation cache
(:mod:`modeq.symbolic.cache`: where it is, how large, and emptying it)."""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("cache", help="show or clear the derivation cache",
                       description="The derivation cache stores derivations, proofs and "
                                   "display forms on disk (MODEQ_CACHE_DIR, else the user's "
                                   "cache directory); MODEQ_NO_CACHE=1 or --no-cache turns it "
                                   "off.")
    p.add_argument("action", choices=("info", "clear"),
                   help="info: the directory, number of entries and size; clear: remove them")
    p.set_defaults(run=run)


def run(args):
    from modeq.symbolic import cache
    if args.action == "clear":
        removed = cache.clear()
        print(f"removed {removed} entr{'y' if removed == 1 else 'ies'} from {cache.cache_dir()}")
        return 0
    i = cache.info()
    state = "on" if i["enabled"] else "off (MODEQ_NO_CACHE)"
    print(f"directory: {i['directory']}\nentries:   {i['entries']}\n"
          f"size:      {_size(i['bytes'])}\ncache:     {state}")
    return 0


def _size(b):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if b < 1024 or unit == "GiB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024
