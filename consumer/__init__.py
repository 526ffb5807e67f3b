"""Turns raw loyalty-redemption webhooks on a Kafka topic into clean Avro records."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("loyalty-consumer")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
