"""Generated gRPC stubs for the laser.v1 contract (regenerate with `python -m laser_proto.generate`)."""
