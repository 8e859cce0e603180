"""Grading a whole class with nbgrader in one command: `make grade` (python -m grading).
See the Instructors section of the README."""


def work(job):
    """grading.worker.run, imported in the worker (the forkserver has it already) and not in the
    process that starts the workers, which needs neither torch nor the judge."""
    from grading import worker
    worker.run(job)
