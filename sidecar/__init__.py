"""The LASER sidecar: gRPC service, rewrite pipeline, backends, and the verifier (sidecar.verify)."""
