"""Scripts run by hand, as `python -m benchmarks.NAME` from the checkout; figures in benchmarks/README.md."""
