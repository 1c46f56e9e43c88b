"""Facts about the running process that the entry point sets and deep layers read (no imports).

``OWN_PROCESS`` is set by the ``netspectra`` entry point (:func:`netspectra.cli.main.main`): only a
process of its own may be ended by :func:`netspectra.services.stack.arm_exit_watchdog` (never a test
runner that calls a command in-process).
"""

OWN_PROCESS = False
