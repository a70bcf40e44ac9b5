"""Model registry and the five architectures; ``create_model(name, ...)`` builds one."""

from fer_search.models import simple_cnn, tv  # noqa: F401  (importing registers the models)
from fer_search.models._registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
