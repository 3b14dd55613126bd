"""What can go wrong talking to a device, as exceptions with one-line messages."""

from ternary_core.errors import TernaryError


class DeviceError(TernaryError):
    """A device could not be used."""


class DeviceAbsent(DeviceError):
    """No device at that port (or the simulated board could not start)."""


class DeviceMute(DeviceError):
    """The device did not answer in time, after every retry."""


class ProtocolMismatch(DeviceError):
    """Something answered, but not in our protocol or not in our version of it."""


class DeviceRejected(DeviceError):
    """The device answered a request with an error status (``status``; ``body`` is what
    followed it, e.g. a RUN's MODEL_ERROR code)."""

    def __init__(self, message, *, status=None, body=b""):
        super().__init__(message)
        self.status, self.body = status, body


class LinkClosed(DeviceError):
    """The link went away (the simulated board exited, the serial port vanished)."""
