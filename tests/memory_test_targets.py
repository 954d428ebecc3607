"""Functions that tests/test_memory.py measures in the worker subprocess (kept dependency-free,
so the worker's baseline stays small and the numbers are about the function alone)."""

MiB = 2**20


def allocate(mib: int = 200) -> dict:
    """Hold `mib` MiB resident: write one byte per page, or the kernel never backs the pages."""
    block = bytearray(mib * MiB)
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    return {"allocated_bytes": len(block)}


def noop() -> dict:
    return {}


def echo(**kwargs) -> dict:
    return {"kwargs": kwargs}


def chatty() -> dict:
    """Prints to stdout (without a final newline) before returning, like a progress bar would."""
    print("step 1 of 2")
    print('{"looks": "like json"}')
    print("almost done", end="")
    return {"ok": True}


def sleep(seconds: float = 60) -> dict:
    import time

    time.sleep(seconds)
    return {}


def fail(message: str = "boom") -> dict:
    raise ValueError(message)


def not_serialisable() -> object:
    return object()


TARGETS = {f.__name__: f for f in (allocate, noop, echo, chatty, sleep, fail, not_serialisable)}
