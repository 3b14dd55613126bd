"""Requests and responses over a transport: sequence numbers, timeouts, retries."""

import time
from dataclasses import dataclass

from ternary_core import protocol as P

from .errors import DeviceMute, DeviceRejected


@dataclass
class LinkStats:
    requests: int = 0
    retries: int = 0
    nacks: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0


class Link:
    """Send a request, wait for its response, retry on NACK or timeout.

    Every command of the protocol is idempotent, so resending a request whose response
    was lost repeats nothing harmful; responses are matched by sequence number and
    command, and anything else (stale or duplicated responses, garbage) is ignored.
    """

    def __init__(self, transport, *, timeout=2.0, retries=6):
        self.transport = transport
        self.timeout, self.retries = timeout, retries
        self.decoder = P.FrameDecoder()
        self.seq = 0
        self.stats = LinkStats()

    def request(self, cmd, payload=b"", *, timeout=None):
        """Return the response payload after the status byte; raise on a device error."""
        self.seq = (self.seq + 1) & 0xFF
        frame = P.encode_frame(self.seq, cmd, payload)
        timeout = timeout or self.timeout
        self.stats.requests += 1
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
            self.transport.write(frame)
            self.stats.bytes_sent += len(frame)
            reply = self._await(cmd, time.monotonic() + timeout)
            if reply is not None:
                status, body = reply[0], reply[1:]
                if status != P.LinkStatus.OK:
                    name = P.LinkStatus(status).name if status in P.LinkStatus._value2member_map_ else status
                    detail = f" (code {body.hex()})" if body else ""
                    raise DeviceRejected(f"the device rejected {P.Cmd(cmd).name}: {name}{detail}",
                                         status=status, body=bytes(body))
                return body
        raise DeviceMute(f"no valid answer to {P.Cmd(cmd).name} from the {self.transport.name} "
                         f"after {self.retries + 1} tries of {timeout:g} s")

    def _await(self, cmd, deadline):
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            data = self.transport.read(left)
            self.stats.bytes_received += len(data)
            for seq, rcmd, payload in self.decoder.feed(data):
                if rcmd == P.NACK:
                    self.stats.nacks += 1
                    return None
                if seq == self.seq and rcmd == cmd | P.RESPONSE_BIT and payload:
                    return payload
