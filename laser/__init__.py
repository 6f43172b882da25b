"""The `laser` command and the local tooling around the service: the embedded cluster, the
background sidecar, the demo, and every benchmark. It drives `sidecar` (the service) and `model`
(training); neither imports it.
"""
