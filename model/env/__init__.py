"""The RL environment (seed 001): the verifier as an episode API.

`tasks` (the five demo tasks, task and corpus files), `contract` (the seed's request and response
shapes), `scoring` (Outcome → the seed's reward and execution report), `leaderboard`, `episode`
(the Environment: reset / step / state / grader / execute over a read-only session per episode),
`server` (the seed's HTTP contract, `laser env serve`), `openenv` (OpenEnv's typed shape) and
`trl` (TRL's `environment_factory` with `submit_rewrite` and `explain` tools).
"""
