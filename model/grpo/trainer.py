"""SQL-GRPO (LASER §5.2): a small trainer of our own around the group maths of ``model.grpo.maths``.

Why not TRL's ``GRPOTrainer``: it fixes one group size (``num_generations``) for every prompt and
computes its advantages inside the step, with no hook for another estimator; SQL-GRPO needs ragged
groups (Complexity-Adaptive Dynamic Rollout gives each prompt its own budget after a pilot) and
the Anchored Group Advantage. Subclassing would mean overriding both the generation and the scoring
step, which is most of that trainer. What is written here is only the loop; the rest is borrowed:
``transformers`` for the model and sampling, the sidecar's prompt and extraction, the verifier pool
for rewards (LASER Eq. 7-8 from ``model.rewards``), PEFT where a LoRA adapter is asked for.

One step:

1. Pilot: ``pilot`` rollouts per prompt (temperature 1.0), with the mean token entropy of each.
2. Rewards for the pilot from the verifier pool (every rollout's SQL verified against the slow
   query); a prompt whose original cannot be run within the cap is skipped (SPA).
3. CADR (Eq. 9): weights from failure, entropy and reward variance; the rest of the step's budget
   is allocated in proportion, and the extra rollouts generated and rewarded.
4. AGA (Eq. 10) per prompt over all its rollouts.
5. Eq. 11: -mean[ min(ρ·A, clip(ρ, 1±ε)·A) - σ·KL(π‖π_ref) ] per token, ``updates_per_batch``
   (μ) optimizer steps per batch: ρ is 1 on the first and the clip binds on the later ones; KL by
   the k3 estimator against the frozen starting model (the SFT model).

tests/test_grpo.py shows the loop end to end (ragged CADR groups, verifier rewards, AGA, the
update) and the expected reward of a tiny model rising on a toy where the reward is reachable
(measured there: +0.66 to +1.37 over 30 steps on 4 seeds with lr 3e-4 and μ = 4; with μ = 1 the
rise was smaller and less reliable on that toy). ``laser train grpo`` runs it.
"""
from __future__ import annotations

import copy
import math
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from model.corpus import structure
from model.grpo.complexity import BUCKETS, bucket
from model.grpo.distributed import World
from model.grpo.maths import Pilot, allocate, anchored_advantages, rollout_weights, slow_rewrites
from model.pool import Job, Verifies
from model.rewards import (
    ALL_GATES_OPEN,
    LaserRewardConfig,
    SpaRewardConfig,
    laser_reward,
    pgars_gates,
    spa_reward,
)
from sidecar.backends.base import Message
from sidecar.backends.transformers_backend import encode_prompt, generated_length
from sidecar.prompting.extract import extract_sql
from sidecar.verify import Outcome, OutcomeStatus


@dataclass(frozen=True)
class Task:
    """One training prompt: the rendered rewrite request and the slow query it asks about."""

    messages: tuple[Message, ...]
    original: str


@dataclass(frozen=True)
class GrpoConfig:
    steps: int = 50
    prompts_per_step: int = 4
    pilot: int = 2
    """k_pilot: rollouts every prompt gets first (Eq. 9)."""
    budget: int = 16
    """Rollouts per step in all, the pilots included."""
    max_per_prompt: int = 8
    adaptive: bool = True
    """False: standard GRPO's fixed group (budget / prompts each), for ablation."""
    anchored: bool = True
    """False: the plain group z-score instead of Eq. 10, for ablation."""
    mix: float = 0.5
    """λ of Eq. 10."""
    temperature: float = 1.0
    max_new_tokens: int = 256
    lr: float = 1e-5
    optimizer: str = "adamw"
    """"adamw" (the usual choice), or "sgd", whose steps follow the policy gradient's size: on a
    tiny model Adam's early sign-like steps move every weight by about ``lr`` and swamp the signal."""
    kl: float = 0.04
    """σ of Eq. 11."""
    clip: float = 0.2
    updates_per_batch: int = 1
    """μ: optimizer steps on each batch of rollouts (GRPO's iterations); above 1 the clip binds."""
    seed: int = 0
    reward: str = "laser"
    """"laser": LASER Eq. 7-8 (the paper's SQL-GRPO); "spa": SPA's milestone reward (Eq. 3)."""
    pgars: bool = True
    """With reward "spa": Probability-Gated Adaptive Reward Shaping (SPA Eq. 2), each group's higher
    milestones unlocked only once a share ``spa.gate_threshold`` (τ) of the group reached the lower
    ones; False: every gate open."""
    rewards: LaserRewardConfig = field(default_factory=LaserRewardConfig)
    spa: SpaRewardConfig = field(default_factory=SpaRewardConfig)
    self_improve_steps: int = 0
    """SPA §3.6: after ``steps`` base steps, this many more on a 1:1 blend of the base prompts and
    the slow rewrites mined from the rollouts (equivalent but slower than the original, in a group
    where another rollout won ≥ ``min_win``), each now an original to rewrite."""
    min_win: float = 1.1
    lora_r: int = 0
    """> 0: train a LoRA adapter of this rank instead of all weights (the KL reference is then the
    model with the adapter switched off, so no second copy of the weights is kept)."""

    def __post_init__(self) -> None:
        if self.budget < self.pilot * self.prompts_per_step:
            raise ValueError("budget must cover the pilot rollouts of every prompt")
        if self.reward not in ("laser", "spa"):
            raise ValueError(f"unknown reward {self.reward!r}: laser or spa")
        if self.self_improve_steps < 0 or self.lora_r < 0 or self.min_win <= 1.0:
            raise ValueError("self_improve_steps and lora_r must not be negative, min_win must exceed 1")
        if self.updates_per_batch < 1:
            raise ValueError("updates_per_batch must be at least 1")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}: adamw or sgd")


@dataclass
class Rollout:
    task: int
    tokens: list[int]
    text: str
    entropy: float
    result: Outcome | None = None
    """The verifier's verdict (an extraction failure when no SQL came out)."""
    reward: float = 0.0
    outcome: str = ""


@dataclass
class StepStats:
    step: int
    mean_reward: float
    rollouts: int
    per_prompt: list[int]
    valid: float
    """Share of rollouts that ran (not a format or execution failure)."""
    equivalent: float
    faster: float
    entropy: float
    kl: float
    loss: float
    skipped: int
    seconds: float
    generating: float = 0.0
    """Seconds spent sampling rollouts."""
    waiting: float = 0.0
    """Seconds spent waiting for rewards after the last rollout was sampled (the verification that
    did not overlap with generation)."""
    budget_by_complexity: dict[str, int] = field(default_factory=dict)
    """Rollouts this step per complexity bucket of the prompts (``model.grpo.complexity``)."""
    mined: int = 0
    """Slow rewrites mined so far for self-improvement."""
    phase: str = "base"


class GrpoTrainer:
    """``render`` gives the rewrite prompt for a query (``model.sft_data.PromptRenderer.render``);
    it is needed only for self-improvement, whose mined slow rewrites become new prompts.
    ``adapter``: a PEFT LoRA adapter of ``model_dir`` (e.g. from ``laser train sft --lora-r R
    --adapter-only``) to start from and go on training; the starting adapter is also the KL
    reference."""

    def __init__(self, model_dir: str | Path, tasks: Sequence[Task], verifier: Verifies,
                 config: GrpoConfig = GrpoConfig(), log: Callable[[str], None] = print,
                 render: Callable[[str], Sequence[Message]] | None = None, adapter: str | Path | None = None) -> None:
        if not tasks:
            raise ValueError("no tasks to train on")
        if config.self_improve_steps and render is None:
            raise ValueError("self-improvement renders prompts for the mined rewrites: give render")
        self.config = config
        self.tasks = list(tasks)
        self.base_count = len(self.tasks)
        self.verifier = verifier
        self.world = World()
        self.log = log if self.world.main else _quiet
        self.render = render
        torch.manual_seed(config.seed)  # the same initial weights (a new adapter's too) in every process
        self.rng = random.Random(config.seed)
        """Draws the prompts; the same sequence in every process, each taking its share."""
        self.mined_rng = random.Random(config.seed + 1 + self.world.rank)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.device = self.world.device
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        loaded: Any = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=dtype)
        self.reference: Any = None
        self.peft = adapter is not None or config.lora_r > 0
        if adapter is not None:
            from peft import PeftModel

            # Two copies of the (small) adapter: "default" is trained, "reference" stays as it was.
            self.policy: Any = PeftModel.from_pretrained(loaded, str(adapter), is_trainable=True).to(self.device)
            self.policy.load_adapter(str(adapter), adapter_name="reference", is_trainable=False)
            self.policy.set_adapter("default")
        elif config.lora_r > 0:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(r=config.lora_r, lora_alpha=2 * config.lora_r, lora_dropout=0.0,
                              target_modules="all-linear", task_type="CAUSAL_LM")
            self.policy = get_peft_model(loaded, lora).to(self.device)
        else:
            self.policy = loaded.to(self.device)
            self.reference = copy.deepcopy(self.policy).eval()
            for parameter in self.reference.parameters():
                parameter.requires_grad_(False)
        trainable = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer: torch.optim.Optimizer = (
            torch.optim.AdamW(trainable, lr=config.lr, weight_decay=0.0) if config.optimizer == "adamw"
            else torch.optim.SGD(trainable, lr=config.lr))
        eos = self.policy.generation_config.eos_token_id
        configured = eos if isinstance(eos, list) else [eos]
        self.eos_ids = frozenset(int(i) for i in [*configured, self.tokenizer.eos_token_id] if i is not None)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos_ids)
        self.prompts = [encode_prompt(self.tokenizer, task.messages, "") for task in self.tasks]
        self.buckets = [bucket(task.original) for task in self.tasks]
        self.mined_keys: set[str] = set()
        self.history: list[StepStats] = []
        if self.world.rank:
            torch.manual_seed(config.seed + self.world.rank)  # each process samples its own rollouts
        self._generating = 0.0
        self._waiting = 0.0

    # -- rollouts -------------------------------------------------------------------------------

    def _generate(self, task_ids: Sequence[int], counts: Sequence[int]) -> list[Rollout]:
        """``counts[i]`` sampled completions of task ``task_ids[i]``, with their mean token entropy."""
        rollouts: list[Rollout] = []
        self.policy.eval()
        for task, count in zip(task_ids, counts, strict=True):
            if count <= 0:
                continue
            ids = torch.tensor([self.prompts[task]], device=self.device)
            config = GenerationConfig(do_sample=True, temperature=self.config.temperature, top_k=0, top_p=1.0,
                                      max_new_tokens=self.config.max_new_tokens, num_return_sequences=count,
                                      pad_token_id=self.pad_id, eos_token_id=sorted(self.eos_ids))
            with torch.inference_mode():
                out = self.policy.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config,
                                           output_scores=True, return_dict_in_generate=True)
            new = out.sequences[:, ids.shape[1]:].tolist()
            scores = torch.stack(out.scores, dim=1).float()  # (count, steps, vocab), after temperature
            probabilities = torch.softmax(scores, dim=-1)
            entropies = -(probabilities * torch.log(probabilities.clamp_min(1e-12))).sum(-1)  # (count, steps)
            for row, tokens in enumerate(new):
                length = generated_length(tokens, self.eos_ids)
                text = self.tokenizer.decode(tokens[:length], skip_special_tokens=True,
                                             clean_up_tokenization_spaces=False)
                entropy = float(entropies[row, :length].mean()) if length else 0.0
                rollouts.append(Rollout(task, tokens[:length], str(text), entropy))
        return rollouts

    def _roll_out(self, task_ids: Sequence[int], counts: Sequence[int]) -> list[Rollout]:
        """Sample ``counts[i]`` rollouts of task ``task_ids[i]`` and verify them. Generation goes
        prompt by prompt; each prompt's rollouts are handed to the verifier on a background thread
        as soon as they exist, so the database checks the last prompt's SQL while the model samples
        the next (the pool's workers are other processes, or Ray actors)."""
        batches: list[tuple[list[Rollout], Future[None]]] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="grpo-rewards") as background:
            for task, count in zip(task_ids, counts, strict=True):
                started = time.monotonic()
                rollouts = self._generate([task], [count])
                self._generating += time.monotonic() - started
                batches.append((rollouts, background.submit(self._verify, rollouts)))
            started = time.monotonic()
            for _, pending in batches:
                pending.result()
            self._waiting += time.monotonic() - started
        return [rollout for rollouts, _ in batches for rollout in rollouts]

    def _verify(self, rollouts: list[Rollout]) -> None:
        """The verifier's outcome for every rollout (an extraction failure needs no database)."""
        jobs: list[tuple[Rollout, Job]] = []
        for rollout in rollouts:
            sql = extract_sql(rollout.text).sql
            if sql is None:
                rollout.result = Outcome(OutcomeStatus.EXTRACTION_FAIL)
            else:
                jobs.append((rollout, Job(self.tasks[rollout.task].original, sql)))
        outcomes = self.verifier.verify_many([job for _, job in jobs]) if jobs else []
        for (rollout, _), outcome in zip(jobs, outcomes, strict=True):
            rollout.result = outcome
        for rollout in rollouts:
            outcome = _outcome(rollout)
            rollout.outcome = "original_failed" if _original_failed(outcome) else outcome.status.value

    def _score(self, group: Sequence[Rollout]) -> None:
        """Rewards for one prompt's rollouts: LASER Eq. 7-8 each, or SPA Eq. 3 under the group's
        PGARS gates (Eq. 2), which is why rewards are given a group at a time."""
        outcomes = [_outcome(r) for r in group]
        if self.config.reward == "laser":
            for rollout, outcome in zip(group, outcomes, strict=True):
                rollout.reward = laser_reward(outcome, self.config.rewards)
            return
        gates = pgars_gates(outcomes, self.config.spa) if self.config.pgars and outcomes else ALL_GATES_OPEN
        for rollout, outcome in zip(group, outcomes, strict=True):
            rollout.reward = spa_reward(outcome, self.config.spa, gates)

    # -- self-improvement (SPA §3.6) ------------------------------------------------------------

    def _mine(self, group: Sequence[Rollout]) -> int:
        """Add the group's slow rewrites as new tasks when another rollout of the group won by at
        least ``min_win`` (the query can be optimized, the policy just has not learned how);
        returns how many were added. A rewrite counts as slow when it is verified equivalent and
        was measured slower than the original (T(q̂) > T(q), SPA's C_slow)."""
        if self.render is None:
            return 0
        outcomes = [_outcome(r) for r in group]
        chosen = slow_rewrites([o.equivalent for o in outcomes], [o.speedup for o in outcomes], self.config.min_win)
        added = 0
        for rollout in (group[i] for i in chosen):
            sql = extract_sql(rollout.text).sql
            if sql is None:
                continue
            try:
                key = structure.normalized(sql)
                messages = tuple(self.render(sql))
            except Exception as exc:  # noqa: BLE001 - a rewrite we cannot render is not mined; say why
                self.log(f"self-improvement: a slow rewrite was not mined ({exc})")
                continue
            if key in self.mined_keys:
                continue
            self.mined_keys.add(key)
            self.tasks.append(Task(messages, sql))
            self.prompts.append(encode_prompt(self.tokenizer, messages, ""))
            self.buckets.append(bucket(sql))
            added += 1
        return added

    def _choose(self, phase: str) -> list[int]:
        """This process's prompts for a step: ``prompts_per_step`` of them (per process)."""
        size = self.config.prompts_per_step
        mined = range(self.base_count, len(self.tasks))
        # The 1:1 blend: half the step's prompts from the mined rewrites (as many as there are).
        from_mined = 0 if phase == "base" or not mined else min(len(mined), size - size // 2)
        return self._base_share(size - from_mined) + self.mined_rng.sample(mined, from_mined)

    def _base_share(self, size: int) -> list[int]:
        """``size`` corpus prompts for this process (fewer when the corpus is smaller), from a draw
        every process makes alike, so that processes take different prompts."""
        base = range(self.base_count)
        if self.world.size == 1:
            return self.rng.sample(base, min(size, len(base)))
        wanted = size * self.world.size
        order = self.rng.sample(base, len(base))
        picks = [order[i % len(order)] for i in range(wanted)]
        return picks[self.world.rank::self.world.size]

    # -- the update (Eq. 11) --------------------------------------------------------------------

    def _token_logprobs(self, model: Any, prompt: list[int], completion: list[int]) -> torch.Tensor:
        ids = torch.tensor([prompt + completion], device=self.device)
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
        return torch.log_softmax(logits, dim=-1).gather(1, ids[0, len(prompt):, None]).squeeze(1)

    def _reference_logprobs(self, used: Sequence[tuple[Rollout, float]]) -> list[torch.Tensor]:
        """Token log-probabilities under the KL reference: the frozen copy (full fine-tuning), the
        starting adapter (``adapter``), or the base with the new adapter switched off (``lora_r``)."""
        if self.reference is not None:
            return [self._token_logprobs(self.reference, self.prompts[r.task], r.tokens) for r, _ in used]
        if "reference" in self.policy.peft_config:
            self.policy.set_adapter("reference")
            try:
                return [self._token_logprobs(self.policy, self.prompts[r.task], r.tokens) for r, _ in used]
            finally:
                self.policy.set_adapter("default")
        with self.policy.disable_adapter():
            return [self._token_logprobs(self.policy, self.prompts[r.task], r.tokens) for r, _ in used]

    def _update(self, rollouts: list[Rollout], advantages: list[float]) -> tuple[float, float]:
        """``updates_per_batch`` (μ) optimizer steps on one batch of rollouts. The first step's ratio
        is 1 (the rollouts came from this policy); later steps see the ratio to the sampling
        policy, clipped as in Eq. 11 so that reusing a batch cannot move the policy far."""
        used = [(r, a) for r, a in zip(rollouts, advantages, strict=True) if r.tokens]
        if not used and self.world.size == 1:
            return 0.0, 0.0
        self.policy.eval()
        with torch.no_grad():
            old = [self._token_logprobs(self.policy, self.prompts[r.task], r.tokens) for r, _ in used]
            reference = self._reference_logprobs(used)
        self.policy.train()
        total_loss, total_kl = 0.0, 0.0
        for _ in range(self.config.updates_per_batch):
            self.optimizer.zero_grad(set_to_none=True)
            total_loss, total_kl = 0.0, 0.0
            for (rollout, advantage), sampled, anchor in zip(used, old, reference, strict=True):
                logprobs = self._token_logprobs(self.policy, self.prompts[rollout.task], rollout.tokens)
                ratio = torch.exp(logprobs - sampled)
                clipped = torch.clamp(ratio, 1 - self.config.clip, 1 + self.config.clip)
                surrogate = torch.minimum(ratio * advantage, clipped * advantage)
                kl = torch.exp(anchor - logprobs) - (anchor - logprobs) - 1  # k3, per token, ≥ 0
                loss = -(surrogate - self.config.kl * kl).mean() / len(used)
                loss.backward()  # type: ignore[no-untyped-call]
                total_loss += float(loss.detach())
                total_kl += float(kl.detach().mean()) / len(used)
            # With several processes every one takes part in every step, rollouts or not.
            self.world.average_gradients(p for p in self.policy.parameters() if p.requires_grad)
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), 1.0)
            self.optimizer.step()
        return total_loss, total_kl

    # -- one step -------------------------------------------------------------------------------

    def step(self, number: int, phase: str = "base") -> StepStats:
        """One step; ``phase`` "self-improve" blends the mined slow rewrites in (SPA §3.6)."""
        started = time.monotonic()
        self._generating = self._waiting = 0.0
        config = self.config
        chosen = self._choose(phase)
        pilot_size = config.pilot if config.adaptive else config.budget // len(chosen)
        rollouts = self._roll_out(chosen, [pilot_size] * len(chosen))
        skipped = {t for t in chosen if all(r.outcome == "original_failed" for r in rollouts if r.task == t)}
        kept = [t for t in chosen if t not in skipped]
        counts = [pilot_size] * len(kept)
        if config.adaptive and kept:
            # Eq. 9 is defined on LASER's reward (its failure indicator is "no pilot above ρsem"),
            # so the pilot is weighed by it whichever reward trains.
            pilots = [Pilot(tuple(laser_reward(_outcome(r), config.rewards) for r in rollouts if r.task == t),
                            statistics.fmean([r.entropy for r in rollouts if r.task == t])) for t in kept]
            weights = rollout_weights(pilots, rho_sem=config.rewards.semantic_penalty)
            budget = config.budget - config.pilot * len(skipped)
            counts = allocate(weights, budget, config.pilot, config.max_per_prompt)
            rollouts += self._roll_out(kept, [c - config.pilot for c in counts])
        rollouts = [r for r in rollouts if r.task in kept]
        advantages: list[float] = [0.0] * len(rollouts)
        mined = 0
        for task in kept:
            members = [i for i, r in enumerate(rollouts) if r.task == task]
            group = [rollouts[i] for i in members]
            self._score(group)
            values = anchored_advantages([r.reward for r in group], mix=config.mix if config.anchored else 0.0)
            for i, value in zip(members, values, strict=True):
                advantages[i] = value
            if config.self_improve_steps and phase == "base":
                mined += self._mine(group)
        loss, kl = self._update(rollouts, advantages) if rollouts or self.world.size > 1 else (0.0, 0.0)
        # Every process's share, so that the numbers describe the whole step.
        shares = self.world.gather({
            "rewards": [r.reward for r in rollouts], "outcomes": [r.outcome for r in rollouts],
            "entropies": [r.entropy for r in rollouts], "counts": counts,
            "buckets": [self.buckets[r.task] for r in rollouts], "skipped": len(skipped), "kl": kl, "loss": loss,
            "generating": self._generating, "waiting": self._waiting, "mined": len(self.tasks) - self.base_count})
        rewards = [x for share in shares for x in share["rewards"]]
        outcomes = [x for share in shares for x in share["outcomes"]]
        entropies = [x for share in shares for x in share["entropies"]]
        ran = [o for o in outcomes if o not in ("extraction_fail", "guard_refused", "exec_error")]
        by_bucket = Counter(x for share in shares for x in share["buckets"])
        stats = StepStats(
            step=number, mean_reward=statistics.fmean(rewards) if rewards else math.nan,
            rollouts=len(rewards), per_prompt=[x for share in shares for x in share["counts"]],
            valid=len(ran) / len(outcomes) if outcomes else 0.0,
            equivalent=sum(o in ("faster", "no_change", "slower", "equivalent", "trivial") for o in outcomes)
            / max(len(outcomes), 1),
            faster=outcomes.count("faster") / max(len(outcomes), 1),
            entropy=statistics.fmean(entropies) if entropies else 0.0,
            kl=statistics.fmean(share["kl"] for share in shares),
            loss=statistics.fmean(share["loss"] for share in shares),
            skipped=sum(share["skipped"] for share in shares), seconds=time.monotonic() - started,
            generating=max(share["generating"] for share in shares),
            waiting=max(share["waiting"] for share in shares),
            budget_by_complexity={b: by_bucket[b] for b in (*BUCKETS, "unparsed") if by_bucket[b]},
            mined=sum(share["mined"] for share in shares), phase=phase)
        self.history.append(stats)
        total = config.steps + config.self_improve_steps
        self.log(f"step {number}/{total} ({phase}): reward {stats.mean_reward:.3f}, rollouts {stats.rollouts} "
                 f"{stats.per_prompt}, valid {stats.valid:.0%}, equivalent {stats.equivalent:.0%}, faster "
                 f"{stats.faster:.0%}, entropy {stats.entropy:.2f}, KL {stats.kl:.4f}, {stats.seconds:.1f} s "
                 f"(sampling {stats.generating:.1f} s, waiting for rewards {stats.waiting:.1f} s)"
                 + (f", mined {stats.mined} (+{mined})" if config.self_improve_steps else ""))
        return stats

    def evaluate(self, samples: int = 16, seed: int = 12345) -> float:
        """The policy's expected reward on the base prompts, estimated by ``samples`` sampled
        rollouts of each (the same temperature as training; no update). The sampling is seeded,
        and the training's random state restored after, so two evaluations differ only by the
        policy (common random numbers), not by the draw. Processes share the prompts out."""
        mine = range(self.world.rank, self.base_count, self.world.size)
        state = torch.random.get_rng_state()
        torch.manual_seed(seed + self.world.rank)
        try:
            rollouts = self._roll_out(mine, [samples] * len(mine))
        finally:
            torch.random.set_rng_state(state)
        for task in mine:
            self._score([r for r in rollouts if r.task == task])
        rewards = [x for share in self.world.gather([r.reward for r in rollouts]) for x in share]
        return statistics.fmean(rewards)

    def train(self) -> list[StepStats]:
        """``steps`` base steps, then ``self_improve_steps`` on the blend (SPA §3.6)."""
        for number in range(1, self.config.steps + 1):
            self.step(number)
        for number in range(self.config.steps + 1, self.config.steps + self.config.self_improve_steps + 1):
            self.step(number, phase="self-improve")
        return self.history

    def save(self, out_dir: str | Path) -> None:
        """A full model directory, or with LoRA the trained adapter alone (PEFT's format, its
        ``base_model_name_or_path`` the base it applies to), with the tokenizer either way."""
        target = Path(out_dir)
        if self.world.size > 1:
            # The replicas took the same steps from the same weights; check before one of them writes.
            with torch.no_grad():
                checksum = float(sum(p.double().sum() for p in self.policy.parameters() if p.requires_grad))
            sums = self.world.gather(checksum)
            if not all(math.isclose(x, sums[0], rel_tol=1e-9, abs_tol=1e-9) for x in sums):
                raise RuntimeError(f"the training processes' weights diverged (checksums {sums})")
        if self.world.main:  # the replicas are identical: one writes
            target.mkdir(parents=True, exist_ok=True)
            self.policy.eval()
            if self.peft:
                self.policy.save_pretrained(target, selected_adapters=["default"])
            else:
                self.policy.save_pretrained(target)
            self.tokenizer.save_pretrained(target)
        self.world.barrier()


def _quiet(line: str) -> None:
    """The log of a process other than the first: the first one speaks for the run."""


def _outcome(rollout: Rollout) -> Outcome:
    if rollout.result is None:
        raise RuntimeError("a rollout was scored before it was verified")
    return rollout.result


def _original_failed(outcome: Outcome) -> bool:
    """The slow query itself could not be run (e.g. beyond the cap): its group is skipped (SPA)."""
    return outcome.status == OutcomeStatus.UNVERIFIABLE and outcome.detail.startswith("the original")
