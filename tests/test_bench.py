"""tools.bench, in its fast mode: every measurement runs and the report holds together.

The numbers of a fast run are not meaningful (tiny matmuls, one step of two examples); the real
ones are in module-3.1/README.md with the command that measured them.
"""

import pytest

from tools import bench


@pytest.mark.slow
def test_fast_bench_measures_every_part(tmp_path):
    report = bench.run(fast=True)
    assert set(report.matmul_gflops) == {"fp32", "bf16"} and all(v > 0 for v in report.matmul_gflops.values())
    names = [s.name for s in report.steps]
    assert names == ["plain loop, PEFT LoRA", "plain loop, Lab 3.1.1 LoRALinear", "course trainer (utils.training)",
                     "TRL SFTTrainer, default loss"]
    for s in report.steps:
        assert s.seconds_per_step > 0 and 0 < s.real_tokens_per_step <= s.tokens_per_step
        # 4 FLOPs per parameter and token: SmolLM2 has 134,515,008 parameters
        assert s.model_flops_per_step == 4.0 * 134_515_008 * s.tokens_per_step
    text = bench.render(report)
    assert "from-scratch LoRA / PEFT step time" in text and "GFLOP/s" in text
    assert report.to_dict()["steps"][0]["tokens_per_second"] > 0
