"""The command engine's request layout against the protocol's one definition."""

import struct

from rtl.command_engine import REQUEST_ARGS
from ternary_core import protocol as P

# Each v1/v2 request's argument struct and the command it reads; MATVEC_READ shares MATVEC's.
COMMANDS = {"write_weights": P.Cmd.WRITE_WEIGHTS, "check_weights": P.Cmd.CHECK_WEIGHTS,
            "load_activations": P.Cmd.LOAD_ACTIVATIONS, "matvec": P.Cmd.MATVEC,
            "read_results": P.Cmd.READ_RESULTS}


def test_request_arguments_are_the_protocols_argument_bytes():
    for name, cmd in COMMANDS.items():
        assert REQUEST_ARGS.members[name].size == 8 * P.ARG_BYTES[cmd], name
    assert P.ARG_BYTES[P.Cmd.MATVEC_READ] == P.ARG_BYTES[P.Cmd.MATVEC]
    assert REQUEST_ARGS.size <= 8 * P.ARGS_MAX       # what the frame parser latches


def test_matvec_fields_sit_where_the_host_packs_them():
    # encode_matvec_read packs "<IHH": base | width << 24, then M, then K
    payload = P.encode_matvec_read(0x012345, 2, 300, 128)
    raw = int.from_bytes(payload[:P.ARG_BYTES[P.Cmd.MATVEC]], "little")
    layout = REQUEST_ARGS.members["matvec"]
    fields = {}
    for name, field in layout:
        fields[name] = (raw >> field.offset) & ((1 << field.width) - 1)
    assert fields == {"base": 0x012345, "width": 2, "m": 300, "k": 128}
    assert struct.unpack("<IHH", payload[:8])[1:] == (300, 128)
