"""ventriloquist: one speech recording + one face photo -> an emotive talking-head video, on the CPU."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ventriloquist")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+local"


def __getattr__(name: str):
    # The pipeline pulls in OpenCV, dlib and PyAV; import it only when asked for.
    if name == "Ventriloquist":
        from .pipeline import Ventriloquist
        return Ventriloquist
    raise AttributeError(name)


__all__ = ["Ventriloquist", "__version__"]
