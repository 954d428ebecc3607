"""utils.gguf_files: the tensor index read straight from a GGUF header agrees with gguf.GGUFReader, which parses every
metadata value first; conversion and quantization refuse bad inputs with a message naming them. (The course model's
real conversion and quantization: tests/test_lab_3_1_10.py and tests/deploy_fixtures.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader, GGUFWriter

from utils.gguf_files import QUANT_TYPES, convert_to_gguf, gguf_tensors, quantize_gguf


def write_gguf(path):
    """A GGUF whose metadata holds every kind of value the reader must skip: scalars of several widths, strings,
    arrays of numbers and of strings (a tokenizer's vocabulary), a nested array; then float and block-quantized tensors."""
    writer = GGUFWriter(str(path), "llama")
    writer.add_string("general.padding", "x" * 5000)
    writer.add_uint8("t.u8", 7)
    writer.add_int16("t.i16", -3)
    writer.add_float64("t.f64", 0.5)
    writer.add_bool("t.flag", True)
    writer.add_array("tokenizer.ggml.tokens", ["<s>", "héllo", "", "a" * 300])
    writer.add_array("t.ints", [1, 2, 3, 4, 5])
    writer.add_array("t.nested", [["a", "bc"], ["def"]])
    writer.add_tensor("a", np.arange(10, dtype=np.float32))
    writer.add_tensor("b", np.ones((4, 8), dtype=np.float16))
    for kind, rows, cols in ((GGMLQuantizationType.Q8_0, 3, 64), (GGMLQuantizationType.Q4_K, 2, 512)):
        block, block_bytes = GGML_QUANT_SIZES[kind]
        raw = np.zeros((rows, cols // block * block_bytes), dtype=np.uint8)
        writer.add_tensor(f"q.{kind.name}", raw, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_tensor_index_agrees_with_gguf_reader(tmp_path):
    path = write_gguf(tmp_path / "mixed.gguf")
    ours = gguf_tensors(path)
    theirs = [{"name": t.name, "type": t.tensor_type.name, "shape": [int(d) for d in t.shape], "n_elements": int(t.n_elements),
               "n_bytes": int(t.n_bytes)} for t in GGUFReader(str(path)).tensors]
    assert ours == theirs
    by_name = {t["name"]: t for t in ours}
    assert by_name["a"]["n_bytes"] == 40 and by_name["b"]["n_bytes"] == 64 and by_name["b"]["type"] == "F16"
    assert by_name["q.Q8_0"]["n_elements"] == 192 and by_name["q.Q8_0"]["n_bytes"] == 192 // 32 * 34  # 8.5 bits per weight
    assert by_name["q.Q4_K"]["n_bytes"] * 8 / by_name["q.Q4_K"]["n_elements"] == 4.5


def test_not_a_gguf_file(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"{}" + bytes(30))
    with pytest.raises(ValueError, match=rf"{path}: not a GGUF file"):
        gguf_tensors(path)


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown quantization 'Q3_X'; choose one of \['Q4_0'"):
        quantize_gguf(tmp_path / "m.gguf", tmp_path / "out.gguf", "Q3_X")
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'm.gguf'}: no such GGUF file"):
        quantize_gguf(tmp_path / "m.gguf", tmp_path / "out.gguf", "Q4_K_M")
    with pytest.raises(FileNotFoundError, match=r"is not a Hugging Face model folder \(no config.json\)"):
        convert_to_gguf(tmp_path, {"f16": tmp_path / "m.gguf"})
    assert set(QUANT_TYPES) == {"Q4_K_M", "Q5_K_M", "Q8_0", "Q4_0", "Q6_K"}
