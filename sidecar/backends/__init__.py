"""Candidate generators behind one interface (`base.Backend`): rules (no model), transformers, vllm."""
from __future__ import annotations

from sidecar.backends.base import Backend


def load_backend(name: str, model_dir: str = "", device: str = "auto", adapter: str = "") -> Backend:
    """The backend `name`, with its model loaded (model backends import their libraries only here).

    Raises BackendError when the model cannot be loaded, ValueError for an unknown name.
    """
    if name == "rules":
        from sidecar.backends.rules import RulesBackend

        return RulesBackend()
    if name == "transformers":
        from sidecar.backends.transformers_backend import TransformersBackend

        return TransformersBackend(model_dir, device=device, adapter=adapter or None)
    if name == "vllm":
        from sidecar.backends.vllm_backend import VllmBackend

        return VllmBackend(model_dir, adapter=adapter or None)
    raise ValueError(f"unknown backend {name!r}")
