"""Offline inference and packaging for the Kaggle kernel. Uses `zoo`, never the reverse."""
