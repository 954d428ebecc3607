"""Go's own text/template (PyPI `go-template`, which bundles Go 1.11.5), to render an Ollama TEMPLATE with the engine
Ollama uses, on the values `utils.modelfile_check` builds as Ollama's chat endpoint would (Ollama's own build is
not run). Its prebuilt library loads on x86-64 Linux only: `go_template_unavailable` says why it cannot run, and
`utils.go_template_subset` renders the subset Modelfiles use elsewhere.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

from utils.deploy_tools import SETUP_HINT


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
