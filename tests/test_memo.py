"""The process-wide memo: an entry answers only for its own key and owner object (by identity,
never by a recycled ``id``), and a full memo starts over -- against a plain model of it."""
import gc
import weakref

from hypothesis import given, settings, strategies as st

from conftest import examples
from modeq.symbolic.memo import Memo


class Owner:
    """An object compared by identity only (like an optimizer declaration)."""


@settings(max_examples=examples(200), deadline=None)
@given(ops=st.lists(st.tuples(st.integers(0, 3), st.integers(-1, 2)), max_size=40),
       limit=st.sampled_from([None, 1, 2, 5]))
def test_memo_answers_for_its_key_and_owner_only(ops, limit):
    owners = [Owner() for _ in range(3)]
    memo, model, made = Memo(limit), {}, []
    for key, who in ops:
        owner = None if who < 0 else owners[who]
        full = (key, who)
        if full not in model and limit is not None and len(model) >= limit:
            model.clear()
        expected = model.setdefault(full, len(made))
        got = memo.get(key, lambda: made.append(full) or len(made) - 1, owner)
        assert got == expected and made[got] == full


def test_an_entry_keeps_its_owner_alive_so_its_id_is_not_recycled():
    """While an entry exists its owner object cannot be freed (so no other object can take its
    ``id`` and be answered with its value); when the memo starts over, the owner is released."""
    memo = Memo(limit=1)
    first = Owner()
    memo.put("k", "first's", first)
    alive = weakref.ref(first)
    del first
    gc.collect()
    assert alive() is not None and memo.peek("k", alive()) == "first's"
    memo.put("other", 0)                      # full: starts over
    gc.collect()
    assert alive() is None
