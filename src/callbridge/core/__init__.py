"""The control plane's domain: calls, ringing, conferences, application calls (no network I/O).

A module per concept; docs/architecture.md ("Where things are") maps them. The entry points
are :class:`callbridge.core.controller.CallController` (devices, legs, calls),
:class:`callbridge.core.conferences.ConferenceManager`, :class:`callbridge.core.appcalls.AppCalls`
and the REST facade :class:`callbridge.core.control.CallControl`; what happens is published
as the typed events of :mod:`callbridge.core.events`.
"""

__all__: list[str] = []
