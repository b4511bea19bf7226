"""``python -m attnviz.bench``: the benchmark's documented entry point
(:mod:`attnviz.tools.bench`)."""
from .tools.bench import main

if __name__ == "__main__":
    main()
