"""utils.ollama_client: which server it talks to, and one-line errors where none answers. (Creating, listing and chatting
with a model on a real Ollama server: tests/test_lab_3_1_10.py, where one runs.)"""

from __future__ import annotations

import pytest

from utils.llama_cpp_engine import free_port
from utils.ollama_client import ollama_create_from_modelfile, ollama_host, ollama_unreachable
from utils.service_errors import ServerError

pytestmark = pytest.mark.deploy  # the `ollama` client and httpx come with `make deploy-setup`


@pytest.mark.parametrize("value, expected", [
    (None, "http://127.0.0.1:11434"), ("0.0.0.0", "http://127.0.0.1:11434"), ("localhost:8080", "http://localhost:8080"),
    ("https://ollama.example:443", "https://ollama.example:443"), ("http://10.1.2.3", "http://10.1.2.3:11434"),
])
def test_ollama_host(monkeypatch, value, expected):
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    if value is not None:
        monkeypatch.setenv("OLLAMA_HOST", value)
    assert ollama_host() == expected


def test_no_server_is_one_line(tmp_path):
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    reason = ollama_unreachable(host)
    assert reason.startswith(f"no Ollama server answers at http://{host} (ConnectError)") and "\n" not in reason
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    (tmp_path / "Modelfile").write_text("FROM ./model.gguf\nPARAMETER temperature 0\n")
    with pytest.raises(ServerError, match=rf"^cannot reach an Ollama server at http://{host} \(") as caught:
        ollama_create_from_modelfile("m", tmp_path / "Modelfile", host=host, timeout=5)
    assert "\n" not in str(caught.value)


def test_a_modelfile_without_its_gguf_is_named(tmp_path):
    (tmp_path / "Modelfile").write_text("FROM ./missing.gguf\n")
    with pytest.raises(FileNotFoundError, match=r"Modelfile: FROM ./missing.gguf is not a file"):
        ollama_create_from_modelfile("m", tmp_path / "Modelfile", host="127.0.0.1:1")
    with pytest.raises(ValueError, match=r"cannot read the Modelfile"):
        ollama_create_from_modelfile("m", tmp_path / "absent", host="127.0.0.1:1")
