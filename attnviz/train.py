"""``python -m attnviz.train``: training's documented entry point, as the model cards' commands
say (:mod:`attnviz.training.train`)."""
from .training.train import main, train  # noqa: F401 - train re-exported

if __name__ == "__main__":
    main()
