"""Facts about the running process that the entry point sets and deep layers read (no imports).

``OWN_PROCESS`` is set by the ``netspectra`` entry point (:func:`netspectra.cli.main.main`): only a
process of its own may be ended by :func:`netspectra.services.stack.arm_exit_watchdog` (never a test
runner that calls a command in-process).
"""

OWN_PROCESS = False

#: True while the cyclic garbage collector is paused for a command's start-up: the entry point pauses it
#: for ``analyze`` (:func:`netspectra.cli.main.main`), whose imports, configuration and kernels would
#: otherwise trigger ~200 collections walking a growing heap (~30 ms of a small capture's command); the
#: command resumes it once started (:func:`resume_gc`), the entry point at the latest when it returns, and
#: a kernel compiled on a cache miss at once (:func:`netspectra.lazy.load_cached_kernels_lean`).
GC_PAUSED = False


def resume_gc() -> None:
    """Switch the cyclic garbage collector back on if the entry point paused it (else nothing)."""
    global GC_PAUSED
    if GC_PAUSED:
        import gc

        GC_PAUSED = False
        gc.enable()


#: Modules whose native state is only safely torn down by a normal interpreter exit (an embedded
#: ClickHouse flushes and unlocks its data directory then): while one is loaded, :func:`exit_now` exits
#: the normal way.
NORMAL_EXIT_MODULES = ("chdb",)


def exit_now(code: int) -> None:
    """End the command's own process with ``code`` once its work is done, without the interpreter's
    finalization when that is safe.

    Tearing down the interpreter after kernels were loaded takes 0.15-0.3 s (numba's and LLVM's
    JIT-ted code and modules disposed of one by one, every object freed) — a third of a small capture's
    whole command. Everything a command's output depends on still happens, in the interpreter's own
    order: non-daemon threads are joined, ``atexit`` handlers run (logging's flush, temporary
    directories' clean-up, ``weakref.finalize`` callbacks), standard streams are flushed; then the
    process ends. Files are written through context managers and closed before a command returns.
    With a module of :data:`NORMAL_EXIT_MODULES` loaded, or under a profiler, tracer or debugger, the
    interpreter exits the normal way."""
    import atexit
    import os
    import sys
    import threading

    if any(name in sys.modules for name in NORMAL_EXIT_MODULES):
        sys.exit(code)
    if sys.getprofile() is not None or sys.gettrace() is not None:
        # a profiler or tracer (``python -m cProfile -m netspectra``, ``trace``, a debugger) writes what
        # it gathered after the program returns: the normal exit lets it
        sys.exit(code)
    # what the interpreter's own exit does first, in its order: threading's exit hooks (they tell idle
    # executor workers to stop: joining those threads without them would wait forever), then every
    # non-daemon thread joined, then the atexit handlers
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    else:
        main = threading.main_thread()
        for thread in threading.enumerate():
            if thread is not main and not thread.daemon:
                thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`): what was written is all there is
            if code == 0:
                code = 120  # what the interpreter returns when it cannot flush at exit
    os._exit(code)
