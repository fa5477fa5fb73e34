"""Speech motion worked out in a second Python process, beside the face's work: a dub's while the face is
followed through the video, a fresh ``generate``'s while the face models load and the photo's face is found
and meshed (pipelines whose models are loaded already, the app's, the server's, batch workers', hear it
themselves).

Hearing the speech (phones, the speech encoder, G) and finding or following a face (dlib) are
both mostly Python and numpy holding the interpreter's lock, so in two threads they take turns on one
core. In a fresh interpreter (``python -m ventriloquist.motion.apart``, fed a pickled request on stdin,
answering on stdout) each gets a core of its own. A plain subprocess, not ``multiprocessing``: that
would import the user's own script again in the child.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from typing import Any, Callable

ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class Apart:
    """``work(*args)`` run in a child interpreter: :meth:`result` waits for it and gives its answer or raises
    its error. ``work`` must be importable by name (a module-level function)."""

    def __init__(self, work: Callable, *args: Any) -> None:
        request = pickle.dumps((work.__module__, work.__qualname__, args), pickle.HIGHEST_PROTOCOL)
        # one core is the child's: its maths libraries do not spread onto the caller's
        env = {**os.environ, **{k: "1" for k in ONE_THREAD}}
        self._proc = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        # a long speech is megabytes: written from a thread, so the caller goes on while the child reads it
        self._feed = threading.Thread(target=self._send, args=(request,), daemon=True)
        self._feed.start()

    def _send(self, request: bytes) -> None:
        try:
            self._proc.stdin.write(request)
            self._proc.stdin.close()
        except OSError:
            pass                    # the child died at start: result() reports why

    def _finish(self) -> tuple[bytes, bytes]:
        """The child's stdout and stderr, once it has ended."""
        self._feed.join()
        self._proc.stdin = None             # written and closed by the feeder
        return self._proc.communicate()

    def result(self) -> Any:
        out, err = self._finish()
        try:
            ok, value = pickle.loads(out)
        except Exception:
            raise RuntimeError(f"the speech process ended without an answer (exit {self._proc.returncode}): "
                               f"{err.decode(errors='replace').strip()[-500:]}") from None
        if not ok:
            raise value
        return value

    def cancel(self) -> None:
        """Stop the child (the dub failed elsewhere)."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._finish()


def _main() -> None:
    import importlib
    module, name, args = pickle.loads(sys.stdin.buffer.read())
    out = sys.stdout.buffer
    sys.stdout = sys.stderr                 # nothing the work prints may corrupt the answer
    try:
        answer = (True, getattr(importlib.import_module(module), name)(*args))
    except Exception as exc:
        answer = (False, exc)
    try:
        data = pickle.dumps(answer, pickle.HIGHEST_PROTOCOL)
    except Exception:                        # an answer that cannot be pickled travels as a message
        what = answer[1] if not answer[0] else "its answer could not be pickled"
        data = pickle.dumps((False, RuntimeError(f"{type(what).__name__}: {what}")), pickle.HIGHEST_PROTOCOL)
    out.write(data)
    out.flush()


if __name__ == "__main__":
    _main()
