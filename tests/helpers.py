"""Small generators shared by the test suites."""

import numpy as np

from ternary_core.model.random import random_trits  # noqa: F401 (the tests' import)


def random_int8(rng, n):
    return rng.integers(-128, 128, size=n, dtype=np.int16).astype(np.int8)


def python_devices(monkeypatch):
    """Make the CLI open a Python double of the device (tests/python_device.py) sized for
    the shipped model wherever it would open a board or the simulated board; returns the
    list the opened devices are appended to."""
    import host.backends as backends
    from host.device import Device
    from host.generate import default_model_path
    from ternary_core.model.file import load_model
    from ternary_core.offload.limits import DeviceLimits
    from tests.python_device import PythonDevice

    config = load_model(default_model_path()).config
    opened = []

    def open_device(args, model=None):
        opened.append(Device(PythonDevice(DeviceLimits.for_config(config))))
        return opened[-1]

    monkeypatch.setattr(backends, "open_device", open_device)
    return opened
