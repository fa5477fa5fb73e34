"""Errors a user can act on; the CLI prints their message as one line and exits non-zero."""


class VentriloquistError(Exception):
    """Base class: the message names the file and says what to do."""


class InputError(VentriloquistError):
    """An input file is missing, unreadable or unsuitable."""


class FaceNotFoundError(InputError):
    """No face could be found where one is needed."""


class MissingWeightsError(VentriloquistError):
    """Model weights needed for a step are not available."""


class InputWarning(UserWarning):
    """An input was usable only in part (e.g. a truncated video); the CLI prints it as one line."""
