"""Process-storm benchmark: procobsrv side by side with forkstat and a psutil poller.

Run ``python -m benchmarks.run`` (``make bench``); ``--quick`` for a CI-sized run.
"""
