"""Configuration of zapi-queue, read from environment variables (and an optional ``.env``)."""

from config.settings import ConfigurationError, Settings, ZapiCredentials, get_settings

__all__ = ["ConfigurationError", "Settings", "ZapiCredentials", "get_settings"]
