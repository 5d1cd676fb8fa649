"""The ``/ws`` signalling protocol: message schemas and the per-connection handler.

Import from the modules: :mod:`callbridge.signalling.protocol`, :mod:`callbridge.signalling.ws`.
"""

__all__: list[str] = []
