"""Benchmarks that print the course's figures: `python -m benchmarks` (or `make bench`).

Each module exposes `main()`; `benchmarks.__main__` runs them in order and skips absent ones.
"""
