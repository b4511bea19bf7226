"""Analysis: what the app and the CLI show from a capture (module labels, the headline map)."""
