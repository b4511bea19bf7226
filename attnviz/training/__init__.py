"""Training the lite models on the synthetic task (or a user's image folder): ``python -m
attnviz.train`` (:mod:`.train`)."""
