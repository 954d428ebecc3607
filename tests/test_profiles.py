import dataclasses

import pytest

from utils.profiles import NBGRADER_ENV, PROFILE_ENV, PROFILES, get_profile, profile_name


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


NULLABLE = {"train_examples", "eval_examples"}  # None means "the whole split"


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_fields_are_sane(name):
    profile = PROFILES[name]
    for f in dataclasses.fields(profile):
        value = getattr(profile, f.name)
        if f.name == "seeds":
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
