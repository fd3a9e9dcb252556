"""All worker configuration, validated in one place at start-up.

Sources, later wins: defaults < TOML file named by `IMAGEGATE_CONFIG` < files in
`IMAGEGATE_SECRETS_DIR` < `IMAGEGATE_*` environment variables. Any librdkafka property passes
through unchanged as `IMAGEGATE_KAFKA__<property>` (e.g. `IMAGEGATE_KAFKA__security.protocol=SASL_SSL`),
so SASL/SSL and tuning need no code change.

Secrets come from files so they stay out of the process environment (which child processes,
crash reports and `/proc/<pid>/environ` show): `IMAGEGATE_SECRETS_DIR` names a directory, e.g. a
mounted Kubernetes Secret, whose every file is one variable, named exactly like it
(`IMAGEGATE_REDIS_URL`, `IMAGEGATE_KAFKA__sasl.password`), holding its value (surrounding
whitespace stripped). Settings fields are read by pydantic-settings' own `secrets_dir`; the
librdkafka pass-through files by `_secret_files` here. Configured secrets (secret-looking
librdkafka properties, the Redis URL's password) are redacted from logs (consumer/logs.py) and
from `repr(settings)`, and no error message quotes a configured value.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

KAFKA_PASSTHROUGH_PREFIX = "IMAGEGATE_KAFKA__"
# At-least-once depends on these; the worker sets them and refuses overrides (a typo in an
# environment variable must not silently turn off acknowledgements or manual offset storage).
SAFETY_CRITICAL_KAFKA = ("enable.idempotence", "acks", "request.required.acks", "enable.auto.offset.store",
                         "enable.auto.commit", "enable.gapless.guarantee", "group.protocol",
                         "partition.assignment.strategy", "group.instance.id")
# Topic settings people reach for through the passthrough; librdkafka would refuse them at client start.
TOPIC_LEVEL_KAFKA = ("replication.factor", "min.insync.replicas")
DEFAULT_POLICY_FILE = Path(__file__).parent / "policies" / "default.json"


class ConfigError(ValueError):
    """Configuration is invalid; the message lists every problem."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMAGEGATE_", extra="ignore", validate_default=True)

    secrets_dir: Path | None = Field(
        None, description="directory of secret files, one per variable, named like it (IMAGEGATE_REDIS_URL, "
        "IMAGEGATE_KAFKA__sasl.password): a mounted Kubernetes Secret")

    # Kafka
    kafka_bootstrap: str = Field("127.0.0.1:9092", min_length=1)
    kafka: dict[str, str] = Field(default_factory=dict, description="librdkafka properties passed through")
    group_id: str = "imagegate"
    group_instance_id: str | None = Field(
        None, description="static membership (group.instance.id), e.g. the pod name: a restarted worker gets its "
        "partitions back without waiting out the session timeout")
    group_protocol: Literal["consumer", "classic"] = Field(
        "consumer", description="'consumer' = KIP-848 incremental rebalancing (Kafka >= 4.0); "
        "'classic' = cooperative-sticky for older brokers")
    topic_in: str = "image_uploaded"
    topic_out: str = "image_scored"
    topic_dlq: str = "image_uploaded.dlq"
    topic_backfill: str | None = Field(
        None, description="optional second input topic for backfills; live uploads have priority over it")
    topic_partitions: int = Field(4, ge=1, description="partition count used when creating topics")
    topic_replication_factor: int | None = Field(
        None, ge=1, description="replication factor of topics `imagegate topics` creates; unset: min(3, brokers)")
    consume_batch: int = Field(200, ge=1, le=10_000)
    consume_timeout_s: float = Field(0.1, gt=0)
    event_max_bytes: int = Field(1 << 20, ge=1024)
    source: str = Field("imagegate-worker", description="CloudEvents ce_source of produced events")

    # Redis cache
    redis_url: str = "redis://127.0.0.1:6379/0"
    cache_ttl_s: int = Field(30 * 24 * 3600, ge=1)
    redis_timeout_s: float = Field(0.25, gt=0)
    redis_retry_after_s: float = Field(2.0, ge=0, description="after a Redis error, skip the cache this long")

    # Model
    model_path: Path | None = None
    device: str = "auto"
    runtime: str | None = Field(
        None, description="inference runtime (model.runtimes.REGISTRY: openvino, onnxruntime, torch, tensorrt, ...); "
        "None = the fastest measured for the device")
    inference_threads: int | None = Field(None, ge=1, description="the runtime's intra-op pool; None = the usable cores")

    # Dynamic batching (names as in Triton's dynamic batcher)
    max_batch_size: int = Field(32, ge=1, le=4096)
    max_batch_delay_ms: float = Field(
        0.0, ge=0, description="how long a batch waits for more images after its first; 0 = what is waiting leaves "
        "as soon as the model is free (latency at low load, full batches under load; consumer/batcher.py)")

    # Flow control
    max_in_flight: int = Field(
        512, ge=1, description="events consumed whose result has not reached the producer yet (fetch, decode, model: "
        "the memory-heavy part); at it partitions pause, resuming at half")
    max_awaiting_ack: int = Field(
        4096, ge=1, description="results handed to the producer and not yet acknowledged by the broker (a record "
        "each, ~1 KB); at it partitions pause too, so a slow or absent broker still stops consumption")
    fetch_concurrency: int = Field(16, ge=1, le=1024)
    decode_threads: int | None = Field(
        None, ge=1, le=1024, description="threads that decode fetched images; None = the usable cores (more decodes "
        "than cores only take the cores from the model)")
    decode_queue_size: int = Field(128, ge=1)
    decode_memory_mb: int = Field(
        1024, ge=16, description="decode working memory shared by all fetch threads (bytes by mode and size)")

    # Fetch
    fetch_timeout_s: float = Field(10.0, gt=0, description="whole-transfer deadline")
    fetch_connect_timeout_s: float = Field(3.0, gt=0)
    fetch_max_bytes: int = Field(25 << 20, ge=1024)
    fetch_retries: int = Field(3, ge=0, le=20, description="retries of transient fetch errors")
    fetch_backoff_ms: float = Field(200.0, ge=0, description="base of full-jitter exponential backoff")
    fetch_max_redirects: int = Field(3, ge=0, le=20)
    allowed_schemes: list[str] = Field(default_factory=lambda: ["https", "http"])
    allow_networks: list[str] = Field(
        default_factory=list, description="CIDRs exempt from the SSRF block (e.g. 127.0.0.0/8 for local tests)"
    )
    file_root: Path | None = Field(None, description="root for file:// URLs; file:// is refused when unset")
    user_agent: str = "imagegate/0.1 (+image quality checks)"

    # Decode
    max_pixels: int = Field(80_000_000, ge=1)
    allowed_formats: list[str] = Field(default_factory=lambda: ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"])

    # Trust
    trust_claimed_sha256: bool = Field(
        False, description="serve a cached result for the event's claimed content_sha256 without fetching; only "
        "for platforms whose upload service hashes the bytes and serves immutable, content-addressed URLs")

    # Policy
    policy_file: Path = DEFAULT_POLICY_FILE
    default_policy: str = "default"

    # Shadow models (consumer/shadow.py): a candidate beside the default on a sample of live traffic
    shadow_model_path: Path | None = Field(
        None, description="candidate weights file run beside the default model (its own instance, its own thread)")
    shadow_policy_file: Path | None = Field(
        None, description="candidate policy file; alone (no shadow model) it re-judges the default model's outputs")
    shadow_sample: float = Field(
        0.1, ge=0.0, le=1.0, description="share of images shadowed, chosen by content hash (reruns pick the same)")
    shadow_topic: str | None = Field(
        None, description="topic for candidate verdicts (image_scored-shaped, marked shadow); never the output topic")
    shadow_max_batch: int = Field(8, ge=1, le=1024, description="images per candidate-model batch")
    shadow_queue: int = Field(64, ge=1, description="samples waiting for the shadow; when full, new samples are dropped")

    # Reliability
    processing_retries: int = Field(2, ge=0, le=10, description="retries of unexpected stage errors before DLQ")
    retry_delays_s: list[float] = Field(
        default_factory=lambda: [5.0, 15.0, 30.0, 60.0, 120.0],
        description="delays before each retry of a transient failure that is ours (DNS, connection, timeout, 5xx, "
        "429, inference); after the last one the event goes to the DLQ, never a seller-facing reject")
    max_delayed: int = Field(10_000, ge=1, description="events waiting for a retry; above it new ones go to the DLQ")
    in_flight_max_age_s: float = Field(
        300.0, gt=0, description="/healthz fails when an event (not waiting for a retry) is in flight longer")
    revoke_timeout_s: float = Field(10.0, ge=0)
    shutdown_timeout_s: float = Field(30.0, ge=0)

    # Operations
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(9400, ge=0, le=65535, description="0 picks a free port")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_events: bool = Field(True, description="one INFO line per finished event (turn off for volume)")
    stall_after_s: float = Field(30.0, gt=0, description="/healthz fails when the loop made no progress this long")

    @field_validator("kafka")
    @classmethod
    def _no_safety_overrides(cls, v: dict[str, str]) -> dict[str, str]:
        bad = sorted(k for k in v if k in SAFETY_CRITICAL_KAFKA)
        if bad:
            raise ValueError(f"{', '.join(bad)} cannot be set through IMAGEGATE_KAFKA__*: the worker sets them "
                             "(at-least-once delivery depends on them; use IMAGEGATE_GROUP_PROTOCOL and "
                             "IMAGEGATE_GROUP_INSTANCE_ID for the group settings)")
        topic_level = sorted(k for k in v if k in TOPIC_LEVEL_KAFKA)
        if topic_level:
            raise ValueError(f"{', '.join(topic_level)} is a topic setting, not a librdkafka client property: set "
                             "IMAGEGATE_TOPIC_REPLICATION_FACTOR or use `imagegate topics --replication-factor`")
        return v

    @field_validator("runtime")
    @classmethod
    def _runtime(cls, v: str | None) -> str | None:
        from model.runtimes import REGISTRY  # numpy only: no runtime package is imported here

        if v is not None and v not in REGISTRY:
            raise ValueError(f"unknown runtime {v!r}; choose from {', '.join(sorted(REGISTRY))}")
        return v

    @field_validator("retry_delays_s")
    @classmethod
    def _delays(cls, v: list[float]) -> list[float]:
        if any(d < 0 for d in v):
            raise ValueError("retry delays must be >= 0 seconds")
        return v

    @field_validator("allowed_schemes")
    @classmethod
    def _schemes(cls, v: list[str]) -> list[str]:
        v = [s.lower() for s in v]
        bad = sorted(set(v) - {"http", "https", "file"})
        if bad:
            raise ValueError(f"unsupported schemes {bad}; choose from http, https, file")
        return v

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for cidr in v:
            ipaddress.ip_network(cidr, strict=False)  # raises ValueError with the bad value
        return v

    @field_validator("allowed_formats")
    @classmethod
    def _formats(cls, v: list[str]) -> list[str]:
        return [f.upper() for f in v]

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        if "file" in self.allowed_schemes and self.file_root is None:
            raise ValueError("allowed_schemes contains 'file' but file_root is not set")
        if self.file_root is not None and not self.file_root.is_dir():
            raise ValueError(f"file_root {self.file_root} is not a directory")
        if not self.policy_file.is_file():
            raise ValueError(f"policy_file {self.policy_file} does not exist")
        if len({self.topic_in, self.topic_out, self.topic_dlq}) != 3:
            raise ValueError("topic_in, topic_out and topic_dlq must differ")
        if self.topic_backfill in (self.topic_in, self.topic_out, self.topic_dlq):
            raise ValueError("topic_backfill must differ from topic_in, topic_out and topic_dlq")
        self._check_shadow()
        return self

    def __repr_args__(self):
        """repr()/str() never show a secret: tracebacks and debug prints may include settings."""
        from consumer.logs import REDACTED, SECRET_KEY

        for name, value in super().__repr_args__():
            if name == "redis_url" and isinstance(value, str):
                value = _redact_url(value)
            elif name == "kafka" and isinstance(value, dict):
                value = {k: (REDACTED if SECRET_KEY.search(k) else v) for k, v in value.items()}
            yield name, value

    @property
    def shadow_enabled(self) -> bool:
        return (self.shadow_model_path is not None or self.shadow_policy_file is not None) and self.shadow_sample > 0

    def _check_shadow(self) -> None:
        """A shadow verdict on a topic listing services read would change what sellers see: refused."""
        if self.shadow_topic is not None:
            if self.shadow_topic == self.topic_out:
                raise ValueError(f"shadow_topic {self.shadow_topic!r} is the output topic: candidate verdicts must "
                                 "never reach listing services; name a topic of their own")
            if self.shadow_topic in (self.topic_in, self.topic_dlq, self.topic_backfill):
                raise ValueError("shadow_topic must differ from topic_in, topic_dlq and topic_backfill")
            if self.shadow_model_path is None and self.shadow_policy_file is None:
                raise ValueError("shadow_topic is set but there is no candidate: set shadow_model_path and/or "
                                 "shadow_policy_file")
        if self.shadow_model_path is not None and not self.shadow_model_path.is_file():
            raise ValueError(f"shadow_model_path {self.shadow_model_path} does not exist")
        if self.shadow_policy_file is not None and not self.shadow_policy_file.is_file():
            raise ValueError(f"shadow_policy_file {self.shadow_policy_file} does not exist")

    def kafka_common(self) -> dict[str, Any]:
        """librdkafka settings shared by consumer, producer and admin clients."""
        conf: dict[str, Any] = {"bootstrap.servers": self.kafka_bootstrap}
        conf.update(self.kafka)
        return conf


def _redact_url(url: str) -> str:
    from urllib.parse import urlsplit

    from consumer.logs import REDACTED

    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return REDACTED
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:{REDACTED}@{netloc}").geturl()


def _secret_files(secrets_dir: Path) -> dict[str, str]:
    """Variable name -> value for every regular file in the directory (Kubernetes mounts each key
    as a symlink into a hidden ..data directory: followed; hidden entries skipped)."""
    if not secrets_dir.is_dir():
        raise ConfigError(f"IMAGEGATE_SECRETS_DIR={secrets_dir}: not a directory")
    out = {}
    for f in sorted(secrets_dir.iterdir()):
        if f.name.startswith(".") or not f.is_file():
            continue
        name = f.name[len("IMAGEGATE_"):].lower() if f.name.upper().startswith("IMAGEGATE_") else None
        if not f.name.startswith(KAFKA_PASSTHROUGH_PREFIX) and name not in Settings.model_fields:
            # A misnamed file would otherwise be ignored and the worker would run without the secret.
            raise ConfigError(f"IMAGEGATE_SECRETS_DIR: file {f.name!r} is not an IMAGEGATE_* setting or "
                              f"{KAFKA_PASSTHROUGH_PREFIX}<property>; name each file like the variable it sets")
        try:
            out[f.name] = f.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            # The error names the file, never its content.
            raise ConfigError(f"IMAGEGATE_SECRETS_DIR: cannot read {f.name}: {type(e).__name__}") from None
    return out


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from file + secret files + environment (+ explicit overrides for tests and CLIs).

    Raises ConfigError listing every invalid setting with the variable that sets it.
    """
    env = os.environ
    values: dict[str, Any] = {}
    cfg_file = env.get("IMAGEGATE_CONFIG")
    if cfg_file:
        try:
            values.update(tomllib.loads(Path(cfg_file).read_text()))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"IMAGEGATE_CONFIG={cfg_file}: {e}") from None
    secrets_dir = overrides.get("secrets_dir") or env.get("IMAGEGATE_SECRETS_DIR") or values.get("secrets_dir")
    files = _secret_files(Path(secrets_dir)) if secrets_dir else {}
    # pydantic-settings ranks init values above the environment and secret files; drop file values they set.
    for k in [*env, *files]:
        if k.upper().startswith("IMAGEGATE_") and not k.startswith(KAFKA_PASSTHROUGH_PREFIX):
            values.pop(k[len("IMAGEGATE_"):].lower(), None)
    n = len(KAFKA_PASSTHROUGH_PREFIX)
    passthrough = {k[n:]: v for k, v in files.items() if k.startswith(KAFKA_PASSTHROUGH_PREFIX)}
    passthrough.update({k[n:]: v for k, v in env.items() if k.startswith(KAFKA_PASSTHROUGH_PREFIX)})
    if passthrough:
        values["kafka"] = {**values.get("kafka", {}), **passthrough}
    values.update(overrides)
    if secrets_dir:
        values["_secrets_dir"] = str(secrets_dir)
        values["secrets_dir"] = Path(secrets_dir)
    try:
        return Settings(**values)
    except ValidationError as e:
        lines = []
        for err in e.errors(include_url=False):
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            var = f"IMAGEGATE_{str(err['loc'][0]).upper()}" if err["loc"] else "IMAGEGATE_*"
            lines.append(f"  {field} ({var}): {err['msg']}")
        raise ConfigError("invalid imagegate configuration:\n" + "\n".join(lines)) from None
