"""Attributions: Captum's methods and the CAM family (:mod:`attnviz.attribution.cam`)."""
