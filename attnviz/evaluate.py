"""``python -m attnviz.evaluate``: evaluation's documented entry point
(:mod:`attnviz.scores.evaluate`)."""
from .scores.evaluate import evaluate, main  # noqa: F401 - evaluate re-exported

if __name__ == "__main__":
    main()
