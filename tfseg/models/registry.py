"""The model registry: one name -> one builder function.

Each architecture lives in its own module and registers itself::

    @register_model("unet")
    def build_unet(image_size=256, num_classes=1, **options) -> keras.Model: ...
"""

from __future__ import annotations

from typing import Callable, Dict

from tfseg.errors import ConfigError

_BUILDERS: Dict[str, Callable] = {}


def register_model(name: str):
    """Decorator: register ``builder`` under ``name`` (lower case)."""

    def decorator(builder):
        _BUILDERS[name.lower()] = builder
        return builder

    return decorator


def available_models():
    """Sorted registered names."""
    return sorted(_BUILDERS)


def get_builder(name: str) -> Callable:
    try:
        return _BUILDERS[str(name).lower()]
    except KeyError:
        raise ConfigError(
            f"model {name!r}: unknown model; choose one of {', '.join(available_models())}"
        ) from None
