"""Queue-driven bulk outbound dialer for the Acefone click-to-call API."""

__version__ = "0.1.0"
