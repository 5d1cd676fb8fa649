"""The control plane's domain: legs, calls and the call controller (no network I/O).

Import from the modules: :mod:`callbridge.core.calls`, :mod:`callbridge.core.controller`.
"""

__all__: list[str] = []
