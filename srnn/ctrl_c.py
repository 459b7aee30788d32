"""Ctrl-C that is never lost.

Python raises KeyboardInterrupt wherever the main thread is when SIGINT arrives. Inside a
weakref callback, a __del__ or a ctypes callback the exception has nowhere to go: Python
prints "Exception ignored in ..." and the program goes on, a training run to its end. Within
`remembered()` a Ctrl-C raises KeyboardInterrupt just as Python's own handler does and is also
recorded, and `check()`, called after every batch, raises it again when it was swallowed.
"""
import contextlib
import signal
import sys
import threading

_pressed = False  # a Ctrl-C arrived inside remembered(); signals are the process's, so is this


def _handler(signum, frame):
    global _pressed
    _pressed = True
    raise KeyboardInterrupt


@contextlib.contextmanager
def remembered():
    """Within: Ctrl-C raises KeyboardInterrupt and is remembered for check(), and a swallowed
    one is not printed (check() raises it). Only in the main thread and in place of Python's own
    handler: a handler the caller installed stays, and so does an ignored SIGINT."""
    global _pressed
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    hook = sys.unraisablehook
    _pressed = False
    signal.signal(signal.SIGINT, _handler)
    sys.unraisablehook = lambda unraisable: None if issubclass(unraisable.exc_type, KeyboardInterrupt) \
        else hook(unraisable)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.unraisablehook = hook
        _pressed = False


def check():
    """Raise KeyboardInterrupt if a Ctrl-C arrived inside remembered(), wherever it landed."""
    if _pressed:
        raise KeyboardInterrupt


def caused(error):
    """Whether `error` is a KeyboardInterrupt or was raised while handling one, at any depth:
    numba wraps a Ctrl-C inside a compiled kernel in a SystemError, twice when kernels nest."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False
