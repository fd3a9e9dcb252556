import pytest

from consumer.config import ConfigError, load_settings


def test_defaults_are_valid():
    s = load_settings()
    assert s.max_batch_size == 32 and s.topic_in == "image_uploaded"


def test_env_and_kafka_passthrough(monkeypatch):
    monkeypatch.setenv("IMAGEGATE_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("IMAGEGATE_KAFKA_BOOTSTRAP", "broker:9093")
    monkeypatch.setenv("IMAGEGATE_KAFKA__security.protocol", "SASL_SSL")
    monkeypatch.setenv("IMAGEGATE_ALLOW_NETWORKS", '["127.0.0.0/8"]')
    s = load_settings()
    assert s.max_batch_size == 8
    assert s.kafka_common() == {"bootstrap.servers": "broker:9093", "security.protocol": "SASL_SSL"}
    assert s.allow_networks == ["127.0.0.0/8"]


def test_config_file_is_overridden_by_env(tmp_path, monkeypatch):
    f = tmp_path / "imagegate.toml"
    f.write_text('max_batch_size = 16\nmax_batch_delay_ms = 3.0\n')
    monkeypatch.setenv("IMAGEGATE_CONFIG", str(f))
    monkeypatch.setenv("IMAGEGATE_MAX_BATCH_SIZE", "4")
    s = load_settings()
    assert s.max_batch_size == 4 and s.max_batch_delay_ms == 3.0


def test_errors_name_every_bad_variable(monkeypatch):
    monkeypatch.setenv("IMAGEGATE_MAX_BATCH_SIZE", "0")
    monkeypatch.setenv("IMAGEGATE_ALLOW_NETWORKS", '["not-a-cidr"]')
    with pytest.raises(ConfigError) as e:
        load_settings()
    msg = str(e.value)
    assert "IMAGEGATE_MAX_BATCH_SIZE" in msg and "IMAGEGATE_ALLOW_NETWORKS" in msg


def test_file_scheme_needs_a_root(tmp_path):
    with pytest.raises(ConfigError, match="file_root"):
        load_settings(allowed_schemes=["file"])
    assert load_settings(allowed_schemes=["file"], file_root=tmp_path).file_root == tmp_path


@pytest.mark.parametrize("prop,value", [("acks", "1"), ("enable.idempotence", "false"), ("enable.auto.offset.store", "true"),
                                        ("enable.auto.commit", "false"), ("group.protocol", "classic")])
def test_safety_critical_kafka_settings_cannot_be_overridden(monkeypatch, prop, value):
    """v1 let IMAGEGATE_KAFKA__acks=1 silently turn off acknowledged delivery."""
    monkeypatch.setenv(f"IMAGEGATE_KAFKA__{prop}", value)
    with pytest.raises(ConfigError, match=f"{prop}.*cannot be set through IMAGEGATE_KAFKA__"):
        load_settings()


def test_other_kafka_properties_still_pass_through(monkeypatch):
    monkeypatch.setenv("IMAGEGATE_KAFKA__security.protocol", "SASL_SSL")
    assert load_settings().kafka_common()["security.protocol"] == "SASL_SSL"


def test_producer_and_consumer_apply_the_safe_settings_last():
    from consumer.loop import SAFE_CONSUMER, consumer_config
    from consumer.sink import SAFE_PRODUCER

    conf = consumer_config(load_settings(kafka={"fetch.min.bytes": "1"}), print, print)
    assert conf["enable.auto.offset.store"] is False and conf["group.protocol"] == "consumer"
    assert SAFE_PRODUCER == {"enable.idempotence": True, "acks": "all"} and SAFE_CONSUMER["enable.auto.offset.store"] is False
