"""Compression stages: prune, quantize, distill, search, and the shared training loop."""
