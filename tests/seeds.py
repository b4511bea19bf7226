"""Seeds for tests whose claims hold on data: a fixed list by default, so a run is repeatable;
fresh ones on request, to look for a seed the claim fails on.

    ATTNVIZ_FRESH_SEEDS=1 ./test.sh tests/test_faithfulness.py -s   # fresh seeds (printed)
    ATTNVIZ_TEST_SEED=123456 ./test.sh tests/test_faithfulness.py   # one given seed, to reproduce
"""
import os

FIXED = (11, 4242, 90210)  # several seeds: each claim is checked on images from all of them


def seeds(n: int = len(FIXED)) -> list[int]:
    """``n`` seeds: ATTNVIZ_TEST_SEED (that one, repeated), fresh ones when ATTNVIZ_FRESH_SEEDS
    is set, else the fixed list."""
    given = os.environ.get("ATTNVIZ_TEST_SEED")
    if given:
        return [int(given)] * n
    if os.environ.get("ATTNVIZ_FRESH_SEEDS", "").strip() not in ("", "0"):
        return [int.from_bytes(os.urandom(4), "little") % (2 ** 31 - 1) for _ in range(n)]
    return [FIXED[i % len(FIXED)] + 1000 * (i // len(FIXED)) for i in range(n)]
