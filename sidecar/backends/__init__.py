"""Candidate generators behind one interface: rules (no model), transformers, vllm."""
