"""Benchmarks: ``python -m bench.<name>`` runs one, ``python -m bench.run_all`` runs them all.

Each prints one JSON line and writes ``bench/results/<name>.json``; figures and commands are in
``bench/README.md``.
"""
