"""`python -m bench [--quick] [--only NAME,...] [--workers N]` — see docs/benchmarks.md."""

from bench.cli import main

main()
