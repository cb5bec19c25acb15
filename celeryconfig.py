"""Celery settings for the dialer (DESIGN.md invariant 1). Broker URL comes from dialer settings."""

# Early ack: a message is acknowledged when a worker takes it, so a killed worker never causes
# a redelivery that re-runs a dial. The committed queued->dialing claim is the real guard.
task_acks_late = False
worker_prefetch_multiplier = 1
worker_disable_prefetch = True
task_serializer = "json"
accept_content = ["json"]
result_serializer = "json"
task_ignore_result = True
# Long ETAs on Redis are redelivered after the visibility timeout; we never use more than 60 s.
broker_transport_options = {"visibility_timeout": 3600}
broker_connection_retry_on_startup = True
worker_hijack_root_logger = False
worker_send_task_events = False
timezone = "UTC"
enable_utc = True
