"""Living neurons: a recording rig in the loop, over files (XDream-compatible) or ZeroMQ.

:class:`~mango.rig.protocol.Transport` moves trials to the rig and answers back;
:class:`~mango.rig.target.RigTarget` runs blocks over a transport (re-shows, timeouts, statuses);
:mod:`mango.rig.simulate` is a rig that misbehaves the way real ones do.
"""
