"""callbridge.config: the :class:`Settings` model and how it is loaded."""

from callbridge.config.settings import (
    CONFIG_ENV,
    ENV_PREFIX,
    ConfigError,
    Settings,
    env_name,
    flag_name,
    load_settings,
    mask_url,
)

__all__ = [
    "CONFIG_ENV",
    "ENV_PREFIX",
    "ConfigError",
    "Settings",
    "env_name",
    "flag_name",
    "load_settings",
    "mask_url",
]
