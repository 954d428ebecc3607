"""A memory-worker registry for tests/test_memory.py: what a target receives as its `profile` (no torch, starts in a second)."""


def echo_profile(profile, lab=None):
    from utils.profiles import Profile, get_profile

    P = get_profile(profile, lab=lab)  # what every course target does with what it was sent
    return {"received": type(profile).__name__, "profile": P.to_dict(), "is_profile": isinstance(profile, Profile)}


TARGETS = {"echo_profile": echo_profile}
