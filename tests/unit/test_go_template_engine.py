"""utils.go_template_engine: Go's own text/template, where its prebuilt library loads (x86-64 Linux), renders with
Go's semantics and turns a template error into a ValueError instead of a panic that would end the process."""

from __future__ import annotations

import pytest

from utils.go_template_engine import go_template_unavailable, render_go_template

pytestmark = pytest.mark.deploy  # go-template comes with `make deploy-setup`

GO_REASON = go_template_unavailable()
needs_go = pytest.mark.skipif(GO_REASON is not None, reason=f"Go's text/template cannot run here: {GO_REASON}")


@needs_go
def test_go_engine_is_real_go():
    """Go semantics a Python imitation would get wrong: trim markers, missing keys, range over a map's slice."""
    assert render_go_template("a  {{- .X -}}  b", {"X": "1"}) == "a1b"
    assert render_go_template("{{ range $i, $m := .L }}{{ $i }}={{ $m.V }};{{ end }}", {"L": [{"V": "x"}, {"V": "y"}]}) == "0=x;1=y;"
    assert render_go_template("{{ .Missing }}", {"X": "1"}) == "<no value>"
    assert render_go_template("{{ if and (eq 1 1) (ne .R \"system\") }}yes{{ end }}", {"R": "user"}) == "yes"
    with pytest.raises(ValueError, match="could not render"):
        render_go_template("{{ if }}", {})


@needs_go
def test_a_list_of_values_renders_in_one_call_and_keeps_text_verbatim():
    values = [{"C": "<|im_start|>user\nline two"}, {"C": 'quotes " & <b>'}]
    assert render_go_template("[{{ .C }}]", values) == ["[<|im_start|>user\nline two]", '[quotes " & <b>]']


def test_the_reason_says_what_to_do_when_go_cannot_run():
    assert GO_REASON is None or "go-template" in GO_REASON
