"""Errors a user can act on; the CLI prints their message as one line and exits with the class's code.

Exit codes: 0 done, 1 an unexpected error (a bug: rerun with --debug and report it), 2 a bad input or
option (:class:`InputError`), 3 the output cannot be written (:class:`OutputError`), 4 model weights
are missing (:class:`MissingWeightsError`), 130 interrupted (Ctrl-C).
"""


class VentriloquistError(Exception):
    """Base class: the message names the file and says what to do."""

    exit_code = 2


class InputError(VentriloquistError):
    """An input file is missing, unreadable or unsuitable, or an option is out of range."""


class FaceNotFoundError(InputError):
    """No face could be found where one is needed."""


class OutputError(VentriloquistError):
    """An output cannot be written: its folder is missing or read-only, it is an input, the disk is full."""

    exit_code = 3


class MissingWeightsError(VentriloquistError):
    """Model weights needed for a step are not available."""

    exit_code = 4


class InputWarning(UserWarning):
    """An input was usable only in part (e.g. a truncated video); the CLI prints it as one line."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is so that it unwinds as a Ctrl-C does: nothing half-written stays."""


def unwind_on_sigterm() -> None:
    """From now on a SIGTERM raises :class:`Terminated` in this process's main thread."""
    import signal

    def terminate(signum, frame):
        raise Terminated
    signal.signal(signal.SIGTERM, terminate)


SHOWN_CHARS = 40        # a refused value is quoted in its message up to this many characters


def shown(value) -> str:
    """A value as an error message quotes it: repr, cut short (a client may send megabytes)."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + f"... ({len(str(value))} characters)"


def existing_file(path, what: str, hint: str):
    """``path`` as a Path when it names a readable regular file; else one InputError saying what it is
    instead (missing, a folder, a pipe or device, a symlink loop), as ``what``, ending with ``hint``."""
    import stat
    from pathlib import Path
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist; {hint}") from None
    except OSError as exc:                         # a symlink loop, a name too long, no permission
        raise InputError(f"{what} {path} cannot be opened ({exc.strerror or type(exc).__name__}); {hint}") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{what} {path} is a folder, not a file; {hint}")
    if not stat.S_ISREG(mode):
        raise InputError(f"{what} {path} is not a regular file (a pipe or a device); save it to a file first")
    return path
