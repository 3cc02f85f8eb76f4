"""Measurement: the LASER figures (Latency, Accuracy, Size, Energy, Robustness)."""
