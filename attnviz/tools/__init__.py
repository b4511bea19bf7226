"""Tools built on the library: the benchmarks."""
