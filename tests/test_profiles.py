import dataclasses

import pytest

from utils.profiles import LAB_SIZES, NBGRADER_ENV, PROFILE_ENV, PROFILES, Profile, get_profile, profile_name


@pytest.mark.parametrize("cuda", [True, False])
def test_nbgrader_forces_grade(cuda):
    environ = {NBGRADER_ENV: "autograde", PROFILE_ENV: "spark"}
    assert profile_name(environ, cuda_available=cuda) == "grade"


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_course_profile_selects(name):
    # Regardless of the hardware: an explicit choice beats detection.
    assert profile_name({PROFILE_ENV: name}, cuda_available=True) == name
    assert profile_name({PROFILE_ENV: name}, cuda_available=False) == name


def test_course_profile_is_case_and_space_insensitive():
    assert profile_name({PROFILE_ENV: " CPU "}, cuda_available=True) == "cpu"


def test_invalid_name_raises_naming_choices():
    with pytest.raises(ValueError) as info:
        profile_name({PROFILE_ENV: "gpu"}, cuda_available=False)
    assert "'gpu'" in str(info.value)
    assert all(name in str(info.value) for name in PROFILES)
    with pytest.raises(ValueError) as info:
        get_profile("laptop")
    assert all(name in str(info.value) for name in PROFILES)


def test_detection_uses_cuda():
    assert profile_name({}, cuda_available=True) == "spark"
    assert profile_name({}, cuda_available=False) == "cpu"
    # An empty variable means "not set", not an invalid profile.
    assert profile_name({PROFILE_ENV: "", NBGRADER_ENV: ""}, cuda_available=False) == "cpu"


def test_get_profile_by_name():
    for name, profile in PROFILES.items():
        assert get_profile(name) is profile
        assert profile.name == name


NULLABLE = {"train_examples", "eval_examples", "lab"}  # None: the whole split / no lab's sizes applied


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_fields_are_sane(name):
    profile = PROFILES[name]
    for f in dataclasses.fields(profile):
        value = getattr(profile, f.name)
        if f.name == "lab_sizes":
            assert value == (), "the shared profiles carry no lab's sizes"
        elif f.name == "seeds":
            assert value and all(isinstance(s, int) and s >= 0 for s in value)
            assert len(set(value)) == len(value)
        elif value is None:
            assert f.name in NULLABLE, f"{name}.{f.name} is None"
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            assert value > 0, f"{name}.{f.name} = {value}"
        elif isinstance(value, str):
            assert value.strip(), f"{name}.{f.name} is empty"
    assert profile.lora_alpha >= profile.lora_r


def test_grade_is_strictly_smaller_than_cpu():
    grade, cpu = PROFILES["grade"], PROFILES["cpu"]
    assert grade.max_steps < cpu.max_steps
    assert grade.eval_examples is not None and cpu.eval_examples is not None
    assert grade.eval_examples < cpu.eval_examples
    assert grade.train_examples is not None  # autograding never trains on the full split


def test_profiles_are_frozen_and_with_copies():
    grade = PROFILES["grade"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        grade.max_steps = 1000
    variant = grade.with_(max_steps=1)
    assert variant.max_steps == 1 and grade.max_steps != 1


def test_grade_and_spark_list_only_what_differs_from_cpu():
    """One set of defaults (cpu) and variants that list only their differences: nothing is restated."""
    import ast
    import inspect

    from utils import profiles

    tree = ast.parse(inspect.getsource(profiles))
    table = next(node.value for node in tree.body if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "PROFILES")
    variants = {ast.literal_eval(k): v for k, v in zip(table.keys, table.values) if isinstance(v, ast.Call)}
    assert set(variants) == {"grade", "spark"}
    for name, call in variants.items():
        for keyword in call.keywords:
            if keyword.arg != "name" and isinstance(keyword.value, ast.Constant | ast.Tuple):
                value = ast.literal_eval(keyword.value)
                assert value != getattr(profiles.CPU, keyword.arg), f"{name} restates cpu's {keyword.arg}={value!r}"


@pytest.mark.parametrize("lab", sorted(LAB_SIZES))
def test_every_lab_has_the_same_own_settings_under_every_profile(lab):
    """A notebook reads P.<setting> under any profile: a setting missing under one of them would crash there."""
    own = {name: dict(get_profile(name, lab=lab).lab_sizes) for name in PROFILES}
    keys = {name: set(sizes) for name, sizes in own.items()}
    assert len({frozenset(k) for k in keys.values()}) == 1, f"lab {lab}: settings differ between profiles: {keys}"
    for name in PROFILES:
        P = get_profile(name, lab=lab)
        assert P.lab == lab and P.name == name
        for key in keys[name]:
            assert getattr(P, key) == own[name][key]


def test_lab_sizes_change_shared_fields_and_add_the_labs_own():
    P = get_profile("cpu", lab="3.1.3")
    assert (P.max_steps, P.batch_size, P.alphas, P.loss_batches) == (28, 4, (0, 5, 10), 4)
    assert (P.lora_r, P.eval_examples, P.seeds) == (PROFILES["cpu"].lora_r, 40, (0, 1, 2)), "the rest is the profile's"
    assert get_profile("grade", lab="3.1.3").alphas == (0, 5) and get_profile("spark", lab="3.1.3").loss_batches is None
    assert P.with_(alphas=(0, 15)).alphas == (0, 15) and P.alphas == (0, 5, 10), "with_ copies, for own settings too"
    assert get_profile("cpu", lab="3.1.5").max_steps == 60 and get_profile("grade", lab="3.1.5").train_examples == 8


def test_unknown_settings_and_labs_name_what_exists():
    with pytest.raises(AttributeError, match=r"no setting 'alpha'.*\['alphas', 'loss_batches'\]"):
        get_profile("cpu", lab="3.1.3").alpha
    with pytest.raises(AttributeError, match=r"no lab's sizes applied"):
        PROFILES["cpu"].alphas
    with pytest.raises(ValueError, match=r"no sizes for lab '3.1.99'.*3.1.2"):
        get_profile("cpu", lab="3.1.99")


def test_profiles_with_lab_sizes_copy_and_pickle():
    import copy
    import pickle

    P = get_profile("spark", lab="3.1.4")
    assert pickle.loads(pickle.dumps(P)) == P == copy.deepcopy(P)
    with pytest.raises(dataclasses.FrozenInstanceError):
        P.probe = 3


def test_no_notebook_branches_on_the_profile_name():
    """Sizes live in utils/profiles.py; a notebook that keys a dict on "grade"/"cpu"/"spark" has a second door."""
    import re

    from tools.notebook_cells import LABS, SOLUTIONS, load

    for notebook in sorted(SOLUTIONS.glob("*.ipynb")) + sorted(LABS.glob("*.ipynb")):
        for cell in load(notebook)["cells"]:
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"])
            assert not re.search(r"""["'](grade|cpu|spark)["']\s*:""", source), f"{notebook.name}: a dict keyed by profile name"
            assert not re.search(r"\[P\.name\]|P\.name\s*[!=]=|==\s*P\.name", source), f"{notebook.name}: branches on P.name"


# ---------------------------------------------------------------- one door: known settings only, a Profile passes through


def test_with_rejects_an_unknown_setting_naming_it_and_the_known_ones():
    P = get_profile("cpu", lab="3.1.3")
    with pytest.raises(ValueError, match=r"profile 'cpu' \(lab 3.1.3\) has no setting 'max_step'; known: .*max_steps.*alphas"):
        P.with_(max_step=3)
    with pytest.raises(ValueError, match=r"no setting 'alphas'"):
        PROFILES["cpu"].with_(alphas=(0,))  # a lab's own size needs that lab's profile


def test_overrides_with_an_unknown_name_list_what_is_known(monkeypatch):
    from utils.profiles import OVERRIDES_ENV

    monkeypatch.setenv(OVERRIDES_ENV, '{"max_step": 2}')
    with pytest.raises(ValueError, match=r"\['max_step'\].*fields: .*'max_steps'.*labs' sizes: .*'alphas'"):
        get_profile("grade")


@pytest.mark.parametrize("name", sorted(PROFILES))
@pytest.mark.parametrize("lab", [None, *sorted(LAB_SIZES)])
def test_every_profile_survives_its_dict_form(name, lab):
    """What crosses to a memory worker or into a run report: every field, back to an equal Profile."""
    import json

    P = get_profile(name, lab=lab)
    data = json.loads(json.dumps(P.to_dict()))
    assert Profile.from_dict(data) == P
    assert set(data) == {f.name for f in dataclasses.fields(Profile)}


def test_from_dict_refuses_what_is_not_a_profile():
    data = PROFILES["grade"].to_dict()
    with pytest.raises(ValueError, match=r"unknown fields \['colour'\]"):
        Profile.from_dict({**data, "colour": 1})
    del data["max_steps"]
    with pytest.raises(ValueError, match=r"missing fields \['max_steps'\]"):
        Profile.from_dict(data)


def test_a_profile_given_to_get_profile_comes_back_unchanged(monkeypatch):
    """A notebook's P.with_(...) handed to code that calls get_profile(profile, lab=...) keeps its changes."""
    from utils.profiles import OVERRIDES_ENV

    P = get_profile("grade", lab="3.1.2").with_(max_steps=3, memory_steps=1)
    monkeypatch.setenv(OVERRIDES_ENV, '{"max_steps": 7}')  # already applied when P was resolved: not again
    assert get_profile(P, lab="3.1.2") is P
    with pytest.raises(ValueError, match=r"lab '3.1.2' was passed where lab '3.1.4'"):
        get_profile(P, lab="3.1.4")


def test_no_notebook_sends_a_profile_name_to_a_fresh_process():
    """measure_peak_memory re-resolving P.name in the worker would drop the notebook's P.with_ changes."""
    import re

    from tools.notebook_cells import SOLUTIONS, load

    for notebook in sorted(SOLUTIONS.glob("lab-3.1.[1-6]-*.ipynb")):
        for cell in load(notebook)["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] == "code" and "measure_peak_memory(" in source:
                assert not re.search(r"""["']?profile["']?\s*[=:]\s*P\.name""", source), f"{notebook.name}: sends P.name, not P"
