"""The LASER sidecar: gRPC service, rewrite pipeline, backends, and the verifier (sidecar.verify)."""

EXTENSION_VERSION = "0.3.0"
"""The extension release this sidecar goes with (pg_extension/build.py VERSION; tests/test_install.py
checks they agree). ModelInfo reports it, so `laser doctor` can compare it with the database's."""
