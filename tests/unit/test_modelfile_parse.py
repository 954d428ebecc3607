"""utils.modelfile_parse: a Modelfile read as the `ollama` client's create() takes it; errors name the line."""

from __future__ import annotations

import pytest

from utils.modelfile_parse import parse_modelfile

pytestmark = pytest.mark.deploy  # as in tests/test_lab_3_1_10.py, where these tests were before


def test_parse_modelfile():
    text = 'FROM ./m.gguf\n# comment\nTEMPLATE """{{ .Prompt }}\nline two\n"""\nPARAMETER stop "<|im_end|>"\nPARAMETER stop <|im_start|>\n' \
           'PARAMETER temperature 0\nPARAMETER top_p 0.9\nSYSTEM """Be\nbrief."""\n'
    spec = parse_modelfile(text)
    assert spec == {"from": "./m.gguf", "template": "{{ .Prompt }}\nline two\n", "system": "Be\nbrief.",
                    "parameters": {"stop": ["<|im_end|>", "<|im_start|>"], "temperature": 0, "top_p": 0.9}}
    with pytest.raises(ValueError, match="Modelfile line 2: TEMPLATE opens"):
        parse_modelfile('FROM x\nTEMPLATE """never closed\n')
    with pytest.raises(ValueError, match="line 2: unknown instruction 'TEMPLTE'"):
        parse_modelfile("FROM x\nTEMPLTE y\n")
    with pytest.raises(ValueError, match="no FROM"):
        parse_modelfile('TEMPLATE "x"\n')


def test_quoted_values_and_errors_name_the_file():
    spec = parse_modelfile('from "./a b.gguf"\nSYSTEM "Be brief."\nPARAMETER num_ctx "2048"\n', "my.Modelfile")
    assert spec == {"from": "./a b.gguf", "system": "Be brief.", "parameters": {"num_ctx": 2048}}
    with pytest.raises(ValueError, match=r"my.Modelfile line 2: PARAMETER needs a name and a value"):
        parse_modelfile("FROM x\nPARAMETER temperature\n", "my.Modelfile")
    with pytest.raises(ValueError, match=r'line 2: text after the closing """ of SYSTEM'):
        parse_modelfile('FROM x\nSYSTEM """a""" b\n')
