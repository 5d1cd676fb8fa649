"""A libopus encoder whose state can be copied: what lets a mixer share encodes without clicks.

The mixer encodes the mix once per codec for every member that is not talking, and a talker gets
its own encode (everyone minus itself). When a member starts talking it moves from the shared
stream to its own. Its device's decoder has been following the shared encoder's state; an own
encoder with any other state makes the decoder mispredict (CELT's band energies, SILK's
filters) and it plays a burst of noise, up to full scale, measured here. libopus documents its
encoder state as one position-independent block that may be copied, so the own encoder takes a
copy of the shared encoder's state just before the switch: the device's decoder sees one
continuous stream whose content changes, which no decoder can tell from speech. (The reverse
switch, back to the shared stream, happens after the gate's hangover, when both encoders have
been fed almost the same audio for 300 ms, and measures far below audibility.)

PyAV does not expose the encoder state, so this module calls libopus through ctypes: the system
library if there is one, else the copy bundled in PyAV's wheel. Settings match
:class:`~callbridge.rtp.codecs.AudioEncoder`: mono, 48 kHz, VoIP application, 32 kbit/s.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

__all__ = ["OpusEncoder", "libopus"]

MIX_RATE = 48000  # as callbridge.rtp.codecs (which imports this module)
MIX_FRAME = 960

_APPLICATION_VOIP = 2048
_SET_BITRATE = 4002
_MAX_PACKET = 1500


@cache
def libopus() -> ctypes.CDLL:
    """libopus, loaded once (system library first, then PyAV's bundled copy)."""
    candidates: list[str] = []
    system = ctypes.util.find_library("opus")
    if system:
        candidates.append(system)
    bundled = Path(av.__file__).resolve().parent.parent / "av.libs"
    candidates += sorted(str(p) for p in bundled.glob("libopus*.so*"))
    for name in candidates:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        int_, int32, ptr = ctypes.c_int, ctypes.c_int32, ctypes.c_void_p
        signatures: list[tuple[Any, Any, list[Any]]] = [
            (lib.opus_encoder_get_size, int_, [int_]),
            (lib.opus_encoder_init, int_, [ptr, int32, int_, int_]),
            (lib.opus_encode, int32, [ptr, ptr, int_, ptr, int32]),
        ]
        for fn, restype, argtypes in signatures:
            fn.restype, fn.argtypes = restype, argtypes
        return lib
    raise RuntimeError("libopus not found (neither a system library nor PyAV's bundled copy)")


class OpusEncoder:
    """Encodes 20 ms frames of 48 kHz mono int16 to Opus payloads; see the module docstring."""

    def __init__(self, bitrate: int = 32000) -> None:
        lib = libopus()
        self._lib = lib
        self._size = lib.opus_encoder_get_size(1)
        self._state = ctypes.create_string_buffer(self._size)
        status = lib.opus_encoder_init(self._state, MIX_RATE, 1, _APPLICATION_VOIP)
        if status != 0:
            raise RuntimeError(f"opus_encoder_init failed ({status})")
        lib.opus_encoder_ctl(self._state, _SET_BITRATE, ctypes.c_int32(bitrate))
        self._out = ctypes.create_string_buffer(_MAX_PACKET)

    def encode(self, frame: npt.NDArray[np.int16]) -> bytes:
        """One 20 ms frame (960 contiguous int16 samples) in, one payload out."""
        if frame.size != MIX_FRAME or not frame.flags.c_contiguous:
            raise ValueError("an Opus frame is 960 contiguous int16 samples")
        n = self._lib.opus_encode(self._state, frame.ctypes.data, MIX_FRAME, self._out, _MAX_PACKET)
        if n < 0:
            raise RuntimeError(f"opus_encode failed ({n})")
        return self._out.raw[:n]

    def copy_state_from(self, other: OpusEncoder) -> None:
        """Continue from ``other``'s state, as if this encoder had encoded what it did."""
        ctypes.memmove(self._state, other._state, self._size)
