"""Talking to an Ollama server with the `ollama` client, for what only Ollama's own API does: find the server,
upload a GGUF and create a model from a Modelfile, list its models. (Its OpenAI-compatible `/v1` is tested like any
other server, by `utils.served_model_client`.) Failures raise `utils.service_errors.ServerError` with one line.
"""

from __future__ import annotations

import os
from pathlib import Path

from utils.modelfile_parse import parse_modelfile
from utils.service_errors import ServerError, error_line

OLLAMA_DEFAULT_HOST = "http://127.0.0.1:11434"


def ollama_host(host: str | None = None) -> str:
    """The Ollama server to use: `host`, else $OLLAMA_HOST, else the default (http://127.0.0.1:11434)."""
    host = (host or os.environ.get("OLLAMA_HOST") or OLLAMA_DEFAULT_HOST).strip().rstrip("/")
    if "://" not in host:
        host = f"http://{host}"
    scheme, _, rest = host.partition("://")
    if ":" not in rest.split("/")[0]:
        rest = rest.replace("/", ":11434/", 1) if "/" in rest else f"{rest}:11434"
    return f"{scheme}://{rest}".replace("://0.0.0.0", "://127.0.0.1")


def ollama_unreachable(host: str | None = None, timeout: float = 2.0) -> str | None:
    """Why no Ollama server answers at `host` (see ollama_host), or None if one does."""
    import httpx

    host = ollama_host(host)
    try:
        response = httpx.get(f"{host}/api/version", timeout=timeout, trust_env=False)
    except httpx.HTTPError as err:
        return f"no Ollama server answers at {host} ({type(err).__name__}); install and start it as LAB_PREP.md describes, or set OLLAMA_HOST"
    if response.status_code != 200 or "version" not in response.text:
        return f"{host} answered, but not as Ollama does (GET /api/version: HTTP {response.status_code})"
    return None


def ollama_create_from_modelfile(model: str, modelfile: str | Path, host: str | None = None, timeout: float = 600) -> list[str]:
    """Create `model` on an Ollama server from a Modelfile: upload its FROM GGUF as a blob, then create
    with template, system and parameters (the client's current API; Modelfile text is no longer sent).
    Returns the server's model names afterwards. Failures raise ServerError with one line."""
    import httpx
    import ollama

    modelfile = Path(modelfile)
    try:
        spec = parse_modelfile(modelfile.read_text(encoding="utf-8"), str(modelfile))
    except OSError as err:
        raise ValueError(f"{modelfile}: cannot read the Modelfile ({err.strerror or err})") from err
    gguf = Path(spec["from"])
    gguf = gguf if gguf.is_absolute() else modelfile.parent / gguf
    if not gguf.is_file():
        raise FileNotFoundError(f"{modelfile}: FROM {spec['from']} is not a file (only a local GGUF is supported here)")
    host = ollama_host(host)
    client = ollama.Client(host=host, timeout=timeout, trust_env=False)
    try:
        digest = client.create_blob(gguf)
        client.create(model=model, files={gguf.name: digest}, template=spec.get("template"), system=spec.get("system"),
                      parameters=spec["parameters"] or None, stream=False)
        return [m.model for m in client.list().models]
    except (ConnectionError, httpx.ConnectError) as err:
        raise ServerError(f"cannot reach an Ollama server at {host} ({error_line(err)})") from None
    except httpx.TimeoutException:
        raise ServerError(f"the Ollama server at {host} did not answer within {timeout:g} s") from None
    except ollama.ResponseError as err:
        raise ServerError(f"the Ollama server at {host} refused to create {model!r}: {error_line(err)}") from None

