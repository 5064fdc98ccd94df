"""Our layer around HpBandSter 0.7.4 (unmaintained), in one package: the master side (``fixed_master``,
``dispatch``, ``bohb_generator``, ``optimizers``, ``result_log``) and the worker side (``worker``,
``membership``) in separate modules, so that a worker imports nothing of the master's.

Each fix names the upstream failure it prevents; ``tests/integration/test_hpbandster_fixes.py``,
``tests/integration/test_deadlocks.py`` (the dispatcher's single-fault deadlocks, each hanging on stock
HpBandSter), ``tests/integration/test_dispatch.py`` and ``tests/integration/test_failures.py`` reproduce each
failure and show the fix.

1. Numpy values on the wire (numpy 2 / ConfigSpace 1.x): configurations become builtins as they leave
   the config generator (so the logs and the final ``Result`` hold them too), budgets in
   :meth:`fixed_master.FixedMaster._submit_job`, worker results in :meth:`worker.ServiceWorker.compute`.
   Otherwise serpent raises inside the dispatcher's job-runner thread (or writes ``np.float64(1.0)``
   that the worker cannot parse) and the run hangs silently.
2. ``json_result_logger`` cannot write numpy integers and loses lines on a crash:
   :class:`result_log.JsonResultLogger` converts and flushes every line (and fsyncs it off the master's lock).
3. ``Master.run`` holds its condition with ``acquire()``/``release()``; an exception (Ctrl-C) leaves it
   locked and every later result callback blocks: :meth:`fixed_master.FixedMaster.run` releases it.
4. ``shutdown(shutdown_workers=True)`` raises on a dead worker and leaves the non-daemon dispatcher
   thread running: :meth:`fixed_master.FixedMaster.shutdown` shuts workers down one by one, tolerating
   failures.
5. ``Worker.__init__`` calls ``logging.basicConfig(DEBUG)`` when given no logger:
   :class:`worker.ServiceWorker` always passes one.
6. ``Worker._run`` asks the dispatcher to discover workers *before* registering itself in the nameserver,
   so a worker joining a running search idles until the next ping interval (10 s and more); it registers
   only once (a restarted nameserver or a resumed master never finds it) and waits forever for a master
   that never comes (a wrong run id): :class:`membership.Membership`, run by
   :meth:`worker.ServiceWorker._run`, keeps it registered, greets every new dispatcher of its run once it is
   registered, and gives up with a reason (``worker.ServiceWorker.exit_error``) after ``MASTER_PATIENCE``.
7. Worker names are host name + pid: two containers on the host network (same host name, both pid 7)
   register under one name and one of them never gets a job: :class:`worker.ServiceWorker` adds a random id.

Idle workers (``tests/integration/test_dispatch.py``; effect measured by ``benchmarks/dispatch.py``):

8. Upstream keeps no job waiting (``job_queue_sizes=(-1, 0)``): a worker that reports a result waits until
   the master has processed it and sampled the next configuration. :class:`fixed_master.FixedMaster` keeps
   ``PREFETCH_JOBS`` sampled jobs waiting. Staleness this introduces: a waiting job's configuration was
   sampled before the result(s) that arrived while it waited (at most ``PREFETCH_JOBS`` results, the same
   kind of staleness upstream already has for every job running on another worker); a new bracket may
   start one job earlier than upstream would start it. Brackets, budgets and promotions are unchanged.
9. Upstream sends that job from a separate thread over a new connection, and the worker answers over
   another new one: :class:`dispatch.ServiceDispatcher` (built by ``FixedMaster``) sends it from the
   result's own thread over a kept connection, and :class:`worker.ServiceWorker` keeps its connection
   back. A job that cannot be sent goes back to the queue (upstream's job-runner thread dies holding its
   lock). Each worker's kept connection holds one thread of the master's Pyro pool (``THREADPOOL_SIZE``,
   256).
   Discovery looks only for new workers when one announces itself (upstream checked all of them, at start-up
   with N workers N times), loses no announcement, and does not free a worker just sent a job.
Failures (issue 5), in :mod:`dispatch`: jobs of dead workers are re-dispatched up to
``max_attempts`` times; ``job_timeout`` stops and records long jobs (:meth:`worker.ServiceWorker.cancel_job`,
:meth:`worker.ServiceWorker.job_cancelled`); every call to a worker has a timeout (a frozen worker blocked
upstream's discovery forever); a dispatcher whose nameserver entry vanished (nameserver restart)
registers again at the next discovery round.

10. BOHB's generator needs ~60 ms of master CPU per model-based configuration:
    :class:`bohb_generator.FastBOHBGenerator` returns the same configurations ~30x cheaper.
11. The dispatcher's threads and the master's loop share one plain lock (``discover_cond`` and
    ``runner_cond``), which the loop takes to count workers. A Ctrl-C raised as ``KeyboardInterrupt`` where
    it arrives can fire right after that acquire, inside ``Condition.__enter__``, where no ``with`` releases
    it; the shutdown then waits for the lock forever. :class:`fixed_master.StoppableCondition` makes the
    loop's waits poll a stop request, and :func:`hpo_service.signals.deferred_stop` holds the signal back
    until then.
"""
