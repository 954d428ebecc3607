"""An Ollama Modelfile read into the pieces the `ollama` client's create() takes (FROM, TEMPLATE, SYSTEM,
PARAMETERs), for `utils.ollama_client`, `utils.modelfile_check` and `tools.modelfile`. Errors name the line.
"""

from __future__ import annotations

import re

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
