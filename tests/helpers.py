"""Small generators shared by the test suites."""

import numpy as np


def random_trits(rng, m, k, p_zero=1 / 3):
    """A random ternary matrix with a given share of zeros."""
    nz = rng.random((m, k)) >= p_zero
    sign = np.where(rng.random((m, k)) < 0.5, -1, 1)
    return (nz * sign).astype(np.int8)


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

    def open_device(args):
        opened.append(Device(PythonDevice(DeviceLimits.for_config(config))))
        return opened[-1]

    monkeypatch.setattr(backends, "open_device", open_device)
    return opened
