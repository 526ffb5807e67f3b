"""The provider registry, in detection order. Adding a provider: one module here, one
raw schema in schemas/, one line below (and its symbol in the canonical Provider enum)."""

from __future__ import annotations

from consumer.providers import mage_loyalty, rivo
from consumer.providers.base import Provider

PROVIDERS: tuple[Provider, ...] = (mage_loyalty.PROVIDER, rivo.PROVIDER)
PROVIDER_NAMES: tuple[str, ...] = tuple(provider.name for provider in PROVIDERS)

__all__ = ["PROVIDERS", "PROVIDER_NAMES", "Provider"]
