"""What a model backend is told and how its answers are read: the rewrite, repair and
counterexample prompts, plan hints, retrieved demonstrations, SQL extraction from a completion, and
EXPLAIN-driven self-correction.
"""
