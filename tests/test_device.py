import pytest

from utils.device import cpu_has_native_bf16

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
