"""Chaos suite (issue 5): faults injected into real runs, and the final results checked.

Every scenario runs a real master (``python -m hpo_service``, BOHB over budgets 1-9, a two-hyperparameter
space) and real worker processes on 127.0.0.1, each in its own session, with the fast fake training of
:mod:`tests.chaos.fault_worker` (sleeps of 0.1-0.3 s per job), injects its fault mid-run, and checks the run
dir at the end (:func:`tests.chaos.harness.check_run`): one result line per planned job
(:func:`hpo_service.brackets.planned_jobs`), no job twice, ``results.pkl`` (HpBandSter's
pickle) and the JSON logs agree, ``run.json`` says finished; results lost (planned jobs without a result)
must be 0.

==================================  ========================================================================
scenario                            fault, and what must hold
==================================  ========================================================================
``worker_sigkill_mid_job``          a worker SIGKILLed mid-job: the job is re-dispatched to another worker
                                    (``--max-attempts``), its result says ``attempts >= 2``, one
                                    "re-dispatching" line per retry
``master_sigkill_resumed_twice``    the master SIGKILLed twice, ``--resume`` each time, its workers left
                                    running: they serve the resumed masters, every result is there once,
                                    BOHB samples model-based configurations after the last resume
``failing_configurations``          NaN loss, CUDA out of memory, an unbuildable config, a worker exception:
                                    each a result with ``status`` and ``reason``, the run goes on
``nameserver_restart``              the nameserver (its own process) killed mid-run and restarted on the
                                    same port: the run goes on, workers and dispatcher register again, a
                                    worker started afterwards gets jobs
``late_joining_worker``             a worker started after the first results gets jobs
``job_timeout``                     a hanging job: recorded as ``timeout`` at ``--job-timeout``, the worker
                                    stops it through its cancel flag and takes jobs again
``ctrl_c_at_random_moments``        Ctrl-C to ``launch.local`` (real training) once, then to master and
                                    workers as one process group after random delays (``CHAOS_SEED``):
                                    the logs stay valid, ``--resume`` takes them, every result once at the end
==================================  ========================================================================

Faults are files dropped into a directory the fault workers watch (see :mod:`tests.chaos.fault_worker`);
the workers' journals (``state/NAME.jsonl``) say which job took which fault. The table of faults injected and
survived, results lost and retries per scenario is printed at the end of the pytest run (``conftest.py``) and
written to ``BASETEMP/chaos-report.json``. Everything is marked ``slow`` and ``integration``::

    .venv/bin/python -m pytest tests/chaos -q -p no:cacheprovider -rA

Process logs of a failed scenario are in its failure message (the last lines of each) and under pytest's
``tmp_path`` (``logs/NAME.log``).
"""
