"""`make tune`: measure a fork's own load profile against its own image and
recommend the worker class, workers, threads and database pool
(docs/tuning.md).

It is the lab's machinery (bench/lab.py's Lab, bench/generators.py's locust
figures, bench/cpu.py's CPU accounting, bench/report.py's paired ratios)
pointed at candidates generated from the app container's CPU quota and the
database's connection budget, instead of at the lab's fixed configurations.
"""
