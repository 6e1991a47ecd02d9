"""The training loop (issue: model zoo registry and training). Uses `zoo`, never the reverse."""
