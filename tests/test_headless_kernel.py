"""tools.headless with a real kernel: the environment given reaches the kernel and nothing else, the notebook runs in
the folder given, and a failing cell still leaves the executed copy. (Without a kernel: tests/unit/test_headless.py.)"""

import json
import os

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tools import headless


@pytest.mark.slow
def test_a_kernel_sees_its_environment_and_this_process_does_not(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_HEADLESS_PROBE", raising=False)
    source = tmp_path / "probe.ipynb"
    nbformat.write(new_notebook(cells=[
        new_code_cell("import os; print(os.environ.get('COURSE_HEADLESS_PROBE'), os.getcwd())"),
        new_code_cell("raise ValueError('boom')"),
        new_code_cell("print('never')"),
    ]), source)
    before = dict(os.environ)
    env = headless.kernel_environment({"COURSE_HEADLESS_PROBE": "seen"})
    (tmp_path / "work").mkdir()
    with pytest.raises(Exception, match="boom"):
        headless.execute(source, tmp_path / "out" / "probe.ipynb", env, tmp_path / "work", cell_timeout=60)
    assert dict(os.environ) == before
    executed = json.loads((tmp_path / "out" / "probe.ipynb").read_text())
    first, second, third = (cell["outputs"] for cell in executed["cells"])
    assert "".join(first[0]["text"]).split() == ["seen", str(tmp_path / "work")]
    assert second[-1]["ename"] == "ValueError" and third == []
    assert json.loads(source.read_text())["cells"][0]["outputs"] == [], "the source notebook is only read"
