"""How `imagegate topics` chooses replication (issue 23), with the cluster's broker count given:
the refusals a single-broker test stack cannot show. The real-broker side: tests/integration/test_operator_topics.py."""

from __future__ import annotations

import pytest

from consumer.config import ConfigError, load_settings
from producer_tools.exit_codes import UsageError
from producer_tools.kafka_clients import plan_topics


@pytest.mark.parametrize("brokers, rf, isr", [(1, 1, None), (2, 2, None), (3, 3, 2), (5, 3, 2)])
def test_default_is_min_3_brokers_with_min_isr_rf_minus_1_from_rf_3(brokers, rf, isr):
    p = plan_topics(brokers, 6, None)
    assert (p.replication_factor, p.min_insync_replicas, p.partitions, p.brokers) == (rf, isr, 6, brokers)


def test_explicit_factor_sets_min_isr_rf_minus_1():
    assert plan_topics(5, 4, 5).min_insync_replicas == 4
    assert plan_topics(5, 4, 2).min_insync_replicas is None  # RF 2: the broker's default (usually 1)


def test_rf_1_on_a_multi_broker_cluster_is_refused_unless_forced():
    with pytest.raises(UsageError, match=r"replication factor 1 on a 3-broker cluster .* --replication-factor 3, or --force"):
        plan_topics(3, 4, 1)
    p = plan_topics(3, 4, 1, force=True)
    assert p.replication_factor == 1 and p.min_insync_replicas is None


def test_rf_1_on_one_broker_needs_no_force():
    assert plan_topics(1, 4, 1).replication_factor == 1


def test_factor_above_the_broker_count_is_refused():
    with pytest.raises(UsageError, match="replication factor 3 needs at least 3 brokers; the cluster has 2"):
        plan_topics(2, 4, 3)


def test_no_brokers_is_refused():
    with pytest.raises(UsageError, match="no brokers"):
        plan_topics(0, 4, None)


def test_setting_is_validated(monkeypatch):
    assert load_settings().topic_replication_factor is None
    monkeypatch.setenv("IMAGEGATE_TOPIC_REPLICATION_FACTOR", "3")
    assert load_settings().topic_replication_factor == 3
    monkeypatch.setenv("IMAGEGATE_TOPIC_REPLICATION_FACTOR", "0")
    with pytest.raises(ConfigError, match="topic_replication_factor"):
        load_settings()


@pytest.mark.parametrize("prop", ["replication.factor", "min.insync.replicas"])
def test_topic_settings_through_the_librdkafka_passthrough_name_the_right_variable(monkeypatch, prop):
    """librdkafka refuses these at client start ("No such configuration property"); say what to set instead."""
    monkeypatch.setenv(f"IMAGEGATE_KAFKA__{prop}", "3")
    with pytest.raises(ConfigError, match=f"{prop} is a topic setting.*IMAGEGATE_TOPIC_REPLICATION_FACTOR"):
        load_settings()
