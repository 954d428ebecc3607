"""One lab's experiment per module: the runs a lab measures, kept out of its notebook because they
must also run in a fresh process (`utils.memory`) or be shared with its tests.

    lora_vs_dora     Lab 3.1.2  one PEFT adapter (LoRA or DoRA) trained on the course task
    neftune_loss     Lab 3.1.3  a finished run's training-set loss with the noise on or off
    stop_and_resume  Lab 3.1.4  a run stopped at a checkpoint, resumed, and compared
    qlora_run        Lab 3.1.5  architecture specs, 4-bit loading, the measured QLoRA run
    preference_methods  Labs 3.1.7-3.1.9  one record per preference method (DPO, SimPO, ORPO, KTO): TRL classes, rows, settings
    preference       Labs 3.1.7-3.1.9  one preference run (any method of preference_methods) with TRL's trainers
    preference_comparison  Labs 3.1.8-3.1.9  a method's run from a fresh model, its SFT-on-chosen control, step timing
    on_policy        Lab 3.1.7  one on-policy DPO round: SFT start, sampled replies labelled by the checker, DPO
    memory_targets   the registry of what `utils.memory` measures in a fresh process (named, never imported, by it)

Shared code (`utils.*` outside this package) never imports from here; a new lab's experiment
goes in a new module here, named for the experiment.
"""
