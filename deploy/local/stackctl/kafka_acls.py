"""Who may do what on the secure profile's cluster. Names are the worker's defaults
(consumer/config.py) plus the backfill topic `image_uploaded.backfill` and a shadow topic
`image_scored.shadow` (IMAGEGATE_SHADOW_TOPIC, for a candidate model); everything not listed is
denied (allow.everyone.if.no.acl.found=false). Listing services get no access to the shadow topic:
candidate verdicts must never reach them."""

from __future__ import annotations

from .paths import StackError, say

TOPIC_IN, TOPIC_OUT, TOPIC_DLQ, TOPIC_BACKFILL = ("image_uploaded", "image_scored", "image_uploaded.dlq",
                                                  "image_uploaded.backfill")
TOPIC_SHADOW = "image_scored.shadow"
ALL_TOPICS = (TOPIC_IN, TOPIC_OUT, TOPIC_DLQ, TOPIC_BACKFILL, TOPIC_SHADOW)

# (principal, resource type, pattern type, name, operations)
ACLS = [
    ("worker", "TOPIC", "LITERAL", TOPIC_IN, ("READ", "DESCRIBE")),
    ("worker", "TOPIC", "LITERAL", TOPIC_BACKFILL, ("READ", "DESCRIBE")),
    ("worker", "TOPIC", "LITERAL", TOPIC_OUT, ("WRITE", "DESCRIBE")),
    ("worker", "TOPIC", "LITERAL", TOPIC_DLQ, ("WRITE", "DESCRIBE")),
    ("worker", "TOPIC", "LITERAL", TOPIC_SHADOW, ("WRITE", "DESCRIBE")),
    ("worker", "GROUP", "LITERAL", "imagegate", ("READ", "DESCRIBE")),
    # the `imagegate` CLI: create topics, publish, tail, backfill, dlq, status, shadow report
    *(("operator", "TOPIC", "LITERAL", t, ("CREATE", "DESCRIBE", "READ", "WRITE", "DESCRIBE_CONFIGS"))
      for t in ALL_TOPICS),
    ("operator", "GROUP", "PREFIXED", "imagegate-", ("READ", "DESCRIBE")),
    ("operator", "GROUP", "LITERAL", "imagegate", ("DESCRIBE",)),
    # a listing service: reads scored results only, in its own group
    ("listing", "TOPIC", "LITERAL", TOPIC_OUT, ("READ", "DESCRIBE")),
    ("listing", "GROUP", "LITERAL", "listing", ("READ", "DESCRIBE")),
]


def bindings():
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, ResourcePatternType,
                                       ResourceType)

    return [AclBinding(getattr(ResourceType, rtype), name, getattr(ResourcePatternType, pattern), f"User:{user}",
                       "*", getattr(AclOperation, op), AclPermissionType.ALLOW)
            for user, rtype, pattern, name, ops in ACLS for op in ops]


def apply_acls(admin_config: dict[str, str]) -> None:
    """Create every ACL (creating an existing one is a no-op for Kafka)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({**admin_config, "log_level": 0})
    futures = admin.create_acls(bindings(), request_timeout=30)
    for binding, fut in futures.items():
        try:
            fut.result()
        except Exception as e:
            raise StackError(f"kafka: creating ACL {binding} failed: {e}") from e
    say(f"kafka: {len(futures)} ACLs in place (worker, operator, listing)")
