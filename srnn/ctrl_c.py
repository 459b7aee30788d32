"""Ctrl-C that is never lost, and SIGTERM handled as Ctrl-C is.

Python raises KeyboardInterrupt wherever the main thread is when SIGINT arrives. Inside a
weakref callback, a __del__ or a ctypes callback the exception has nowhere to go: Python
prints "Exception ignored in ..." and the program goes on, a training run to its end. Within
`remembered()` a Ctrl-C raises KeyboardInterrupt just as Python's own handler does and is also
recorded, and `check()`, called after every batch, raises it again when it was swallowed.
SIGTERM (`kill`, a cluster scheduler's stop), which by default ends Python at once and without a
word, raises `Terminated` there in the same way: the run says what is saved and exits with 143.
"""
import contextlib
import signal
import sys
import threading

_DEFAULTS = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}  # Python's own
_received = None  # the signal that arrived inside remembered(); signals are the process's, so is this


class Terminated(KeyboardInterrupt):
    """SIGTERM, a KeyboardInterrupt so that every Ctrl-C path handles it alike."""


def _interrupt(signum):
    return Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def _handler(signum, frame):
    global _received
    _received = signum
    raise _interrupt(signum)


@contextlib.contextmanager
def remembered():
    """Within: Ctrl-C raises KeyboardInterrupt (SIGTERM, Terminated) and is remembered for check(),
    and a swallowed one is not printed (check() raises it). Only in the main thread and in place
    of Python's own handlers: a handler the caller installed stays, and so does an ignored signal."""
    global _received
    main = threading.current_thread() is threading.main_thread()
    ours = [s for s, default in _DEFAULTS.items() if main and signal.getsignal(s) is default]
    if not ours:
        yield
        return
    hook = sys.unraisablehook
    _received = None
    for s in ours:
        signal.signal(s, _handler)
    sys.unraisablehook = lambda unraisable: None if issubclass(unraisable.exc_type, KeyboardInterrupt) \
        else hook(unraisable)
    try:
        yield
    finally:
        for s in ours:
            signal.signal(s, _DEFAULTS[s])
        sys.unraisablehook = hook
        _received = None


def check():
    """Raise KeyboardInterrupt (Terminated) if a Ctrl-C (SIGTERM) arrived inside remembered(),
    wherever it landed."""
    if _received is not None:
        raise _interrupt(_received)


def caused(error):
    """The KeyboardInterrupt that `error` is or was raised while handling, at any depth, else None:
    numba wraps a Ctrl-C inside a compiled kernel in a SystemError, twice when kernels nest."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def ended(interrupt):
    """What an interrupt did, and the exit status that says so: 128 + the signal, as a shell reports it."""
    return ("terminated", 128 + signal.SIGTERM) if isinstance(interrupt, Terminated) \
        else ("interrupted", 128 + signal.SIGINT)
