"""The rules file: finding and loading it (loader), its typed settings (settings),
validation against schema.json (schema), and the findings it reports (problem).

    from hasthook.config import load, Config
"""

from __future__ import annotations

from ..errors import ConfigError
from .loader import (
    DEFAULT_PATH,
    ENV_VAR,
    Config,
    find,
    from_data,
    load,
    load_for_hook,
    state_dir_hint,
)
from .problem import Problem
from .settings import Settings

__all__ = ["DEFAULT_PATH", "ENV_VAR", "Config", "ConfigError", "Problem", "Settings", "find",
           "from_data", "load", "load_for_hook", "state_dir_hint"]
