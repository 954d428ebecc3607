"""utils.experiments.preference_methods: each record builds TRL 1.16's objects, and no code branches on a method's name.

The records are checked against TRL itself, not against a second copy of their facts: the classes they name
import from TRL 1.16 and build a config and a trainer on course rows; a trainer takes a `ref_model` exactly when
the record says the method uses a reference; the columns a record asks for are those of the course data its
trainer reads; and (slow) what one training step logs is the record's list of reward metrics. The last tests
keep the registry the one place: any comparison with a method's name (`method == "kto"`, `in ("dpo", "kto")`)
or a dict keyed by method names elsewhere in the code, the tests or the labs fails, with the file and line.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import tempfile
from pathlib import Path

import pytest
import transformers
import trl

from utils.experiments.preference_methods import METHODS, PreferenceMethod, preference_method
from utils.profiles import get_profile

REPO = Path(__file__).resolve().parents[2]
REGISTRY = REPO / "utils" / "experiments" / "preference_methods.py"
REWARD_KEYS = ("rewards/", "logps/", "kl", "nll_loss", "log_odds")  # the log keys a record's metrics cover


@pytest.fixture(params=sorted(METHODS))
def method(request) -> PreferenceMethod:
    return METHODS[request.param]


def test_the_course_pins_trl_1_16():
    assert trl.__version__.startswith("1.16."), f"the records name TRL 1.16's classes; installed: trl {trl.__version__}"


def test_each_record_names_trl_classes_that_build_a_config_and_a_trainer(method, smollm2_tokenizer):
    from peft import LoraConfig
    from trl_reference import tiny_llama

    config_class, trainer_class = method.config_class(), method.trainer_class()
    assert config_class.__module__.startswith("trl.") and trainer_class.__module__.startswith("trl.")
    assert issubclass(config_class, transformers.TrainingArguments) and issubclass(trainer_class, transformers.Trainer)
    if method.trl_trainer.startswith("trl.experimental."):  # CPO and ORPO: TRL 1.16 keeps them there
        assert trainer_class.__module__.startswith("trl.experimental.")
    P = get_profile("grade").with_(batch_size=2, max_steps=1)
    rows = method.training_data(4)
    with tempfile.TemporaryDirectory() as out:
        config = method.config(P, out, beta=0.2)
        assert type(config) is config_class and config.beta == 0.2 and config.max_steps == 1
        trainer = trainer_class(model=tiny_llama(len(smollm2_tokenizer)), args=config, train_dataset=rows, processing_class=smollm2_tokenizer,
                                peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    assert len(trainer.train_dataset) == len(rows)


def test_a_trainer_takes_a_reference_model_exactly_when_the_record_says_so(method):
    takes = "ref_model" in inspect.signature(method.trainer_class().__init__).parameters
    assert takes is method.takes_reference, f"{method.name}: TRL's {method.trl_trainer} ref_model parameter: {takes}"


def test_paired_methods_read_pairs_and_unpaired_ones_read_labels(method):
    rows = method.training_data(4)
    if method.paired:
        assert {"prompt", "chosen", "rejected"} <= set(method.columns) and "label" not in method.columns
    else:
        assert {"prompt", "completion", "label"} <= set(method.columns) and "chosen" not in method.columns
    assert set(method.columns) <= set(rows.column_names), f"{method.name}: its own training rows lack {method.columns}"


def test_rows_of_the_other_kind_are_refused_naming_what_is_missing():
    pairs, kto_rows = METHODS["dpo"].training_data(4), METHODS["kto"].training_data(4)
    with pytest.raises(ValueError, match=r"'kto' \(KTO\) needs .*lack \['completion', 'label'\]"):
        METHODS["kto"].check_columns(pairs)
    with pytest.raises(ValueError, match=r"'dpo' \(DPO\) needs .*lack \['chosen', 'rejected'\]"):
        METHODS["dpo"].check_columns(kto_rows)
    METHODS["dpo"].check_columns(list(pairs))  # a list of dicts is read too


def test_simpo_is_cpo_with_its_own_settings_and_a_caller_can_still_override_them():
    P = get_profile("grade", lab="3.1.8")
    with tempfile.TemporaryDirectory() as out:
        config = METHODS["simpo"].config(P, out, **METHODS["simpo"].lab_settings(P))
        assert (config.loss_type, config.cpo_alpha, config.beta, config.simpo_gamma) == ("simpo", 0.0, P.simpo_beta, P.simpo_gamma)
        assert config.remove_unused_columns is False  # the CPO collator reads the raw columns
        assert METHODS["simpo"].config(P, out, cpo_alpha=0.5).cpo_alpha == 0.5


def test_lab_settings_come_from_each_labs_profile():
    assert METHODS["dpo"].lab_settings(get_profile("cpu", lab="3.1.7")) == {"beta": get_profile("cpu", lab="3.1.7").beta}
    P8, P9 = get_profile("cpu", lab="3.1.8"), get_profile("cpu", lab="3.1.9")
    assert METHODS["dpo"].lab_settings(P8) == {"beta": P8.dpo_beta}
    assert METHODS["orpo"].lab_settings(P8) == {"beta": P8.orpo_lambda}
    assert METHODS["kto"].lab_settings(P9) == {"beta": P9.kto_beta}
    with pytest.raises(ValueError, match=r"'kto': profile 'cpu' \(lab 3.1.8\) sets none of \['kto_beta'\]"):
        METHODS["kto"].lab_settings(P8)


def test_an_unknown_method_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown preference method 'ppo'; choose one of \['dpo', 'kto', 'orpo', 'simpo'\]"):
        preference_method("ppo")


def test_records_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        METHODS["dpo"].paired = False


@pytest.mark.slow
def test_one_training_step_logs_exactly_the_records_reward_metrics(method, smollm2_tokenizer):
    """What `reward_history` reads: every metric of the record is logged, and no reward metric is left out.

    One batch of all four rows: for KTO, two desirable and two undesirable ones (TRL logs a label's metrics only
    when the batch has rows of it, so a batch of one label would log half of them).
    """
    from peft import LoraConfig
    from trl_reference import tiny_llama

    from utils.experiments.preference import train_preference

    rows = method.training_data(4)
    assert method.paired or 0 < sum(rows["label"]) < len(rows), "the batch needs both labels"
    P = get_profile("grade").with_(batch_size=len(rows), max_steps=1, logging_steps=1)
    with tempfile.TemporaryDirectory() as out:
        trainer = train_preference(method.name, tiny_llama(len(smollm2_tokenizer)), smollm2_tokenizer, rows, P,
                                   out, peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"),
                                   disable_tqdm=True)
    logged = {key for entry in trainer.state.log_history for key in entry if key.startswith(REWARD_KEYS)}
    assert logged == set(method.metrics), f"{method.name}: TRL logged {sorted(logged)}, the record says {sorted(method.metrics)}"


# --- one place: no branch on a method's name outside the registry -------------------------------------------------


def method_names() -> set[str]:
    """Every name a method goes by: its key, its title, and its TRL trainer's family (SimPO is CPO)."""
    names = set()
    for m in METHODS.values():
        names |= {m.name, m.title.lower(), m.trl_trainer.rpartition(".")[2].removesuffix("Trainer").lower()}
    return names


def branches_on_method_names(source: str, where: str) -> list[str]:
    """Each comparison with a method's name (any case), and each dict literal keyed by method keys, in `source`: 'where:line: code'.

    Comparisons inside an `assert` are left out: they state what a value must be (a test's check), they do not decide.
    """
    names = method_names()

    def is_name(node) -> bool:
        return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lower() in names

    def is_key(node) -> bool:  # a dict keyed the way METHODS is; a lab's run table keyed by titles ("KTO 1:4") is not
        return isinstance(node, ast.Constant) and node.value in names

    def holds_names(node) -> bool:
        return is_name(node) or isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(is_name(e) for e in node.elts)

    tree = ast.parse(source)
    stated = {id(n) for a in ast.walk(tree) if isinstance(a, ast.Assert) for n in ast.walk(a)}  # a test's claim, not a branch
    found = []
    for node in ast.walk(tree):
        if id(node) in stated:
            continue
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops):
            if any(holds_names(side) for side in (node.left, *node.comparators)):
                found.append(node)
        elif isinstance(node, ast.Dict) and sum(is_key(key) for key in node.keys if key is not None) >= 2:
            found.append(node)
        elif isinstance(node, ast.match_case) and any(is_name(n.value) for n in ast.walk(node.pattern) if isinstance(n, ast.MatchValue)):
            found.append(node.pattern)
    lines = source.splitlines()
    return [f"{where}:{n.lineno}: {lines[n.lineno - 1].strip()}" for n in found]


def code_files(root: Path):
    """(label, source) of every Python file under utils/, tools/ and tests/ and every code cell of solutions/ and labs/."""
    for folder in ("utils", "tools", "tests"):
        for path in sorted((root / folder).rglob("*.py")):
            yield str(path.relative_to(root)), path
    for folder in ("solutions", "labs"):
        for path in sorted((root / folder).glob("*.ipynb")):
            for cell in json.loads(path.read_text())["cells"]:
                if cell["cell_type"] == "code":
                    source = "".join(cell["source"])
                    yield f"{path.relative_to(root)} cell {cell.get('id')}", "\n".join(
                        "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def scan(root: Path, skip: tuple[Path, ...] = ()) -> list[str]:
    found = []
    for label, source in code_files(root):
        if isinstance(source, Path):
            if source.resolve() in skip:
                continue
            source = source.read_text()
        found += branches_on_method_names(source, label)
    return found


def test_nothing_branches_on_a_method_name_outside_the_registry():
    found = scan(REPO, skip=(REGISTRY.resolve(), Path(__file__).resolve()))
    assert not found, ("these lines decide by a preference method's name; ask its record in utils/experiments/preference_methods.py "
                       "(paired, takes_reference, columns, metrics, settings) instead:\n  " + "\n  ".join(found))


WRONG_EDITS = {  # plausible edits that bring a method's facts back outside the registry, one per kind the scan catches
    "utils/experiments/preference_comparison.py": 'def f(method, data):\n    if method != "kto":\n        raise ValueError(method)\n',
    "utils/experiments/preference.py": 'def g(method):\n    if method in ("dpo", "kto"):\n        return True\n',
    "utils/experiments/on_policy.py": 'METRICS = {"dpo": ("rewards/chosen",), "kto": ("kl",)}\n',
    "tests/test_lab.py": 'def h(method):\n    match method:\n        case "simpo":\n            return 1\n',
    "utils/other.py": 'def k(name):\n    return 2 if name == "ORPO" else 1\n',
}


def test_the_scan_catches_each_plausible_wrong_edit(tmp_path):
    for relative, source in WRONG_EDITS.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(source)
    (tmp_path / "solutions").mkdir()
    cell = {"cell_type": "code", "id": "experiment", "metadata": {}, "source": ['if method == "dpo":\n', "    pass"]}
    (tmp_path / "solutions" / "lab.ipynb").write_text(json.dumps({"cells": [cell]}))
    found = scan(tmp_path)
    for relative in WRONG_EDITS:
        assert any(line.startswith(relative + ":") for line in found), f"the scan missed the edit in {relative}: {found}"
    assert any(line.startswith("solutions/lab.ipynb cell experiment:1:") for line in found), found
    # what it must not flag: reading a record, and names that are not compared
    assert branches_on_method_names('m = preference_method("kto")\nif m.paired:\n    pass\nRUNS = {"KTO 1:4": ("kto", 4)}\n', "ok") == []
