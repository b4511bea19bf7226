"""Tools built on the library: the benchmarks (``python -m attnviz.bench``, :mod:`.bench`; every
attribution method beside its peers, :mod:`.bench_attribution`) and the statistics report."""
