"""The ``imagegate`` operator CLI and the jobs behind it: topics, publish, serve, loadgen, tail,
get, backfill, dlq, status, score, report, policy check/diff (``cli/`` wires one module per
command group; the work lives in the modules next to it).

May import ``consumer`` (config, events, fetch, decode, policy: the same code the worker runs)
and ``model``; never ``training``, and nothing of ours imports ``producer_tools``
(tests/unit/test_layering.py checks this).
"""
