"""The imagegate worker: consume ``image_uploaded``, score, emit ``image_scored`` (``imagegate-worker``).

Owns everything that runs in the worker process: the Kafka loop (``loop``, ``flow``,
``rebalance``), the chain of steps (``pipeline``, ``steps/``), fetching (``fetch/``), decoding,
signals, policy, the sink, cache, offsets, health, metrics, logs, configuration and the event
contract (``events``, which listing services may import alone). May import ``model`` (the
network at inference) and nothing else of ours: never ``training`` or ``producer_tools``
(tests/unit/test_layering.py checks this). The map: docs/architecture.md.
"""
