"""The training toolkit: tiny models for tests, SFT, and the helpers around them.

This package may import ``sidecar.backends`` (to share its prompt rendering); the sidecar never
imports it.
"""
