"""A page's newest request (app.sessions.NewestRequests): an earlier queued analysis gives way
to a newer choice, and a queued analysis whose own note (sent outside the queue) has not
arrived yet still runs -- under load the queued request can overtake its note (a top-5 click
once drew nothing in CI because of that)."""
from attnviz.app.sessions import NewestRequests


def test_stale_request_gives_way_and_overtaking_request_runs():
    n = NewestRequests()
    k1, k2, k3 = ("img", "lite_cbam", "gradcam", "None"), ("img", "lite_cbam", "gradcam", "3"), \
        ("img", "lite_se", "gradcam", "None")
    n.note("page", k1)
    assert n.claim("page", k1)  # its own note came first
    n.note("page", k2)  # a new choice noted at once
    assert not n.claim("page", k1) and n.superseded("page", k1)  # the earlier one gives way
    assert n.claim("page", k3)  # queued before its note arrived: newer than every noted key
    assert n.superseded("page", k2) and not n.superseded("page", k3)
    n.note("page", k3)  # the late note changes nothing
    assert n.claim("page", k3) and not n.claim("page", k2)
    assert n.claim(None, k1) and n.claim("other page", k1)  # API clients and other pages


def test_pages_are_bounded():
    n = NewestRequests(max_pages=3)
    for i in range(10):
        n.note(f"p{i}", ("k", i))
        n.note(f"p{i}", ("k", i + 100))
    assert len(n._newest) == 3 and set(n._older) <= set(n._newest)
