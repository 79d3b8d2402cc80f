"""The arbiter's stand-in for the gevent worker class (issue 19, memory).

gunicorn imports the worker class in the arbiter and creates each worker
object there before it forks. ``gunicorn.workers.ggevent`` imports gevent
at its top, so naming :class:`deploy.gunicorn_worker.XRouterGeventWorker`
in ``worker_class`` put gevent (and zope.interface, its C extensions) into
the arbiter: 5.4 MB of its 31.4 MB RSS (sync worker class: 26.0 MB, measured
with bench/run.py memory's processes, bench/profiles/memory-imports.txt).
This class is all the arbiter needs: gunicorn's async worker base, which
imports no gevent. In the forked child, before anything else runs, it
becomes the real worker (same object: the arbiter watches its heartbeat
file) and the real worker's start-up runs as before, gevent patching first.
A side benefit: the arbiter now never imports gevent at all, so nothing
there can be half-patched.
"""

from __future__ import annotations

from gunicorn.workers.base_async import AsyncWorker


class LazyGeventWorker(AsyncWorker):
    """``XRouterGeventWorker`` once forked; a plain async worker before."""

    def init_process(self) -> None:
        # Runs in the child only. The imports load gevent here, not in the
        # arbiter; the real worker patches everything before the app loads.
        from deploy.gunicorn_worker import XRouterGeventWorker

        self.__class__ = XRouterGeventWorker
        XRouterGeventWorker.configure(self)
        self.init_process()
