import pytest

from utils.device import cpu_has_native_bf16, use_bf16

HEADER = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Test CPU avx512_bf16 edition\n"
AVX2 = "fpu vme de pse tsc msr sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma"


def cpuinfo(flags: str, cores: int = 2) -> str:
    block = f"processor\t: {{n}}\nvendor_id\t: GenuineIntel\nflags\t\t: {flags}\nvmx flags\t: vnmi ept\n\n"
    return "".join(block.format(n=n) for n in range(cores))


@pytest.mark.parametrize(
    "text, expected",
    [
        (cpuinfo(AVX2 + " avx512f avx512bw avx512_bf16"), True),
        (cpuinfo(AVX2 + " amx_bf16 amx_tile amx_int8"), True),
        (cpuinfo(AVX2), False),
        (cpuinfo(AVX2 + " avx512f avx512bw avx512_vnni"), False),  # AVX-512 alone is not bf16
        ("", False),
        # The flag must be in the flags line, not elsewhere in the text.
        (HEADER + f"flags\t\t: {AVX2}\n", False),
    ],
)
def test_cpu_has_native_bf16(text, expected):
    assert cpu_has_native_bf16(text) is expected


def test_reads_the_real_cpuinfo_without_error():
    assert cpu_has_native_bf16() in (True, False)


@pytest.mark.parametrize(
    "environ, expected",
    [({"COURSE_PRECISION": "fp32"}, False), ({"COURSE_PRECISION": "FP32 "}, False), ({"COURSE_PRECISION": "bf16"}, True)],
)
def test_precision_switch_overrides_the_hardware(environ, expected):
    assert use_bf16(environ) is expected


def test_auto_precision_follows_the_hardware():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA machine: auto follows torch.cuda.is_bf16_supported()")
    assert use_bf16({}) is cpu_has_native_bf16()
    assert use_bf16({"COURSE_PRECISION": "auto"}) is cpu_has_native_bf16()


def test_unknown_precision_is_a_clear_error():
    with pytest.raises(ValueError, match="COURSE_PRECISION='fp16' is not a precision"):
        use_bf16({"COURSE_PRECISION": "fp16"})
