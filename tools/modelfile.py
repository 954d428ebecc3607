"""Write an Ollama Modelfile from a model's own chat template, and prove its TEMPLATE renders what the tokenizer renders.

    python -m tools.modelfile MODEL_DIR [--gguf FILE] [--out Modelfile] [--system TEXT] [--parameter NAME=VALUE ...]
    python -m tools.modelfile MODEL_DIR --check Modelfile            # check a Modelfile you wrote yourself

MODEL_DIR is a Hugging Face folder with the tokenizer (a merged fine-tune, or a hub snapshot). The tool reads the
chat format's markers by rendering probe conversations (utils.modelfile_check.chat_markers: ChatML, Llama 3.1
and other start/role/sep/content/end formats), writes the Go TEMPLATE, the stop strings and the course's
PARAMETERs, then renders the TEMPLATE as Ollama would (Go's text/template where go-template loads, else the
course's renderer for the subset of Go's template language Modelfiles use, with a warning) for conversations
with and without a system message, multi-turn, and with two messages of one role in a row (Ollama merges
those into one turn before the template sees them), and compares each character for character with the
tokenizer's rendering with the generation prompt. A conversation without a system message is compared
with the tokenizer's rendering after the Modelfile's SYSTEM (or the course's empty system turn), as the course trains.

--gguf FILE: FROM names it, and its metadata decides whether llama.cpp adds the BOS token (then the TEMPLATE
must not write it); a chat template stored in it that differs from MODEL_DIR's is reported.

Exit codes: 0 identical on every conversation (the Modelfile is written), 1 a difference (the first differing
character, both texts around it and the conversation are printed; nothing is written) or a TEMPLATE that does
not render or lacks the end-of-turn stop, 2 cannot check (bad input, a format the tool cannot express, a
template outside what the engines here render).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_DIFFERS = 1
EXIT_ERROR = 2


def write_modelfile(gguf_file: str, markers: dict, system: str, parameters: dict) -> str:
    """The reference solution of Lab 3.1.10's Exercise 3 (kept out of the student edition; tests hold the two equal)."""
    start, sep, end = markers["start"], markers["sep"], markers["end"]
    system_header = start + "system" + sep + markers["system_prefix"]
    template = (
        markers["prefix"]
        + "{{ range $i, $m := .Messages }}"
        + '{{ if and (eq $i 0) (ne $m.Role "system") }}' + system_header + "{{ $.System }}" + end + "{{ end }}"
        + '{{ if eq $m.Role "system" }}' + system_header + "{{ else }}" + start + "{{ $m.Role }}" + sep + "{{ end }}"
        + "{{ $m.Content }}" + end
        + "{{ end }}"
        + start + "assistant" + sep
    )
    lines = [f"FROM {gguf_file}", f'TEMPLATE """{template}"""']
    for stop in (end.strip(), start.strip()):
        lines.append(f'PARAMETER stop "{stop}"')
    for name, value in parameters.items():
        lines.append(f"PARAMETER {name} {value}")
    if system:
        lines.append(f'SYSTEM """{system}"""')
    return "\n".join(lines) + "\n"


def course_parameters() -> dict:
    """The PARAMETERs Lab 3.1.10 writes: greedy, no repetition penalty, the profile's reply length, a 2048-token context."""
    from utils.profiles import get_profile

    return {"temperature": 0, "repeat_penalty": 1.0, "num_predict": get_profile(lab="3.1.10").max_new_tokens, "num_ctx": 2048}


def gguf_metadata(path: Path) -> dict:
    """add_bos_token and chat_template from a GGUF's metadata (None where absent)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    out = {}
    for key, name in (("tokenizer.ggml.add_bos_token", "add_bos"), ("tokenizer.chat_template", "chat_template")):
        f = reader.fields.get(key)
        out[name] = None if f is None else (bool(f.parts[f.data[0]][0]) if name == "add_bos" else bytes(f.parts[f.data[0]]).decode("utf-8"))
    return out


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m tools.modelfile", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path, help="Hugging Face model folder holding the tokenizer and its chat template")
    parser.add_argument("--gguf", type=Path, help="the GGUF file the Modelfile serves (FROM); its metadata says whether llama.cpp adds BOS")
    parser.add_argument("--out", type=Path, default=Path("Modelfile"), help="where to write the Modelfile (default ./Modelfile)")
    parser.add_argument("--system", default="", help="a default system prompt (SYSTEM line); default none, the course's empty system turn")
    parser.add_argument("--parameter", action="append", default=[], metavar="NAME=VALUE",
                        help="a PARAMETER to set or override (repeatable); the course's: temperature=0 repeat_penalty=1.0 "
                             "num_predict=<the profile's max_new_tokens> num_ctx=2048")
    parser.add_argument("--check", type=Path, metavar="MODELFILE", help="check this Modelfile instead of writing one")
    return parser.parse_args(argv)


def _fail(message: str) -> int:
    print(f"tools.modelfile: {message}", file=sys.stderr)
    return EXIT_ERROR


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from utils import go_template_subset as subset
    from utils.modelfile_parse import parse_modelfile
    from utils.modelfile_check import SAME_ROLE_NOTE, NotAChatFormat, chat_markers, check_modelfile, trims_contents

    if not (args.model_dir / "tokenizer_config.json").is_file():
        return _fail(f"{args.model_dir}: not a Hugging Face model folder with a tokenizer (no tokenizer_config.json)")
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.model_dir, local_files_only=True)
    except (OSError, ValueError) as err:
        return _fail(f"{args.model_dir}: the tokenizer does not load ({' '.join(str(err).split())[:200]})")
    if not tokenizer.chat_template:
        return _fail(f"{args.model_dir}: the tokenizer has no chat template (base models have none; use the instruct model's tokenizer)")
    add_bos = None
    if args.gguf is not None:
        if not args.gguf.is_file():
            return _fail(f"--gguf {args.gguf}: no such file")
        try:
            meta = gguf_metadata(args.gguf)
        except (OSError, ValueError, IndexError, KeyError) as err:
            return _fail(f"--gguf {args.gguf}: not a readable GGUF file ({err})")
        add_bos = meta["add_bos"]
        if meta["chat_template"] is not None and meta["chat_template"] != tokenizer.chat_template:
            print(f"note: {args.gguf} stores a chat template that differs from {args.model_dir}'s; llama.cpp's own server would use the GGUF's")
    try:
        markers = chat_markers(tokenizer, add_bos=add_bos)
    except NotAChatFormat as err:
        return _fail(f"{args.model_dir}: its chat template is not a format this tool can write as a Go TEMPLATE: {err}")

    if args.check is not None:
        try:
            modelfile = args.check.read_text(encoding="utf-8")
            spec = parse_modelfile(modelfile, str(args.check))
        except (OSError, ValueError) as err:
            return _fail(f"--check {args.check}: {err}")
        if "template" not in spec:
            return _fail(f"--check {args.check}: no TEMPLATE to check")
    else:
        parameters = course_parameters()
        for item in args.parameter:
            name, eq, value = item.partition("=")
            if not eq or not name.strip() or not value.strip():
                return _fail(f"--parameter {item!r}: expected NAME=VALUE")
            parameters[name.strip()] = value.strip()
        gguf = args.gguf if args.gguf is not None else Path("model.gguf")
        modelfile = write_modelfile(_from_path(gguf, args.out), markers, args.system, parameters)
        spec = parse_modelfile(modelfile)

    try:
        result = check_modelfile(modelfile, tokenizer, markers=markers)
    except subset.UnsupportedTemplate as err:
        return _fail(f"cannot check the TEMPLATE here: {err}")
    except subset.TemplateError as err:
        print(f"the TEMPLATE does not render: {err}")
        return EXIT_DIFFERS
    print(f"chat markers of {args.model_dir}: {markers}")
    print(result.report())
    print(f"note: {SAME_ROLE_NOTE}")
    if trims_contents(tokenizer):
        print("note: the chat template strips white space around each message's content and a Go TEMPLATE cannot, so a client "
              "that sends a message starting or ending in white space gets a slightly different prompt in Ollama")
    stops = spec["parameters"].get("stop", [])
    missing_stop = markers["end"].strip() not in stops
    if missing_stop:
        print(f"MISSING STOP: no PARAMETER stop \"{markers['end'].strip()}\" (the end of a turn); replies would run on")
    if not result.ok or missing_stop:
        print(f"{len(result.mismatches)} of {len(result.compared)} conversations differ" + ("; the end-of-turn stop is missing" if missing_stop else ""))
        return EXIT_DIFFERS
    if args.check is None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(modelfile, encoding="utf-8")
        print(f"wrote {args.out}: identical on all {len(result.compared)} conversations. Next: ollama create NAME -f {args.out}")
    else:
        print(f"{args.check}: identical on all {len(result.compared)} conversations")
    return 0


def _from_path(gguf: Path, out: Path) -> str:
    """FROM as Ollama resolves it: relative to the Modelfile's folder when the GGUF lies under it, else absolute."""
    try:
        return "./" + gguf.resolve().relative_to(out.resolve().parent).as_posix()
    except ValueError:
        return str(gguf.resolve())


if __name__ == "__main__":
    sys.exit(main())
