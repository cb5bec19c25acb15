"""The HTTP surface: webhook receiver, REST API, metrics, health."""
