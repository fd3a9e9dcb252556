"""The local dev/test stack behind `deploy/local/stack`, one module per concern.

paths (stack dir, ports, locks, messages), procs (spawn, signal, pid ownership), install
(Kafka jars via Maven, Debian packages), kafka and kafka_probe (the broker and its readiness
check), redis (redis-server), cli (the command line). Standard library only, so the wrapper
can run it with a bare python3; confluent_kafka is used for the Kafka readiness check when
it is importable.
"""
