"""What a test module needs besides the kit's Python (tools/system.py NEEDS): where it is
missing, its tests are skipped, and the end of the run names, one line each, what could
not run here and the command that would make it run.

`make test` runs the modules in three processes at once (pytest-xdist, `-n 3`; three keep two
cores busy while a test waits on a server, a sleep or another process): each module stays whole
in one process, so its module fixtures are made once; the modules in TOGETHER share one process,
one after the other; the slowest start first.

Every test process, and every kernel, grader and notebook it starts with its environment, runs
torch on one thread: three processes share two cores, and on a busy machine others share them
too, where torch's pool of a thread per core spends its time spinning (tests/test_checks.py
beside two CPU hogs: 80 s with the pool, 15 s with one thread)."""
import os
import sys
from collections import defaultdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'tools'))
import system  # noqa: E402

os.environ.setdefault('OMP_NUM_THREADS', '1')  # before anything imports torch
os.environ.setdefault('MKL_NUM_THREADS', '1')

from tests.course import accounts, postgres, traversable_root  # noqa: E402,F401  one of each per process

# They open /root to other accounts and close it again, and the hub's test searches every file
# its student can read for answers, which the exchange's test leaves readable: one at a time.
TOGETHER = ('test_course_hub.py', 'test_course_exchange.py', 'test_kit.py')
# The slowest first (a module started last should be a short one); the rest as they come.
SLOWEST = ('test_course_hub.py', 'test_attacks.py', 'test_grading.py', 'test_course_gradebook.py',
           'test_visible_predicts_grade.py', 'test_lab.py', 'test_training.py', 'test_student_kit.py',
           'test_course_exchange.py', 'test_kit.py')


def rank(item):
    name = item.path.name
    return SLOWEST.index(name) if name in SLOWEST else len(SLOWEST)


def pytest_collection_modifyitems(config, items):
    for item in items:
        lacking = system.missing(system.NEEDS.get(item.path.name, []))
        if lacking:
            item.add_marker(pytest.mark.skip(reason=f'needs {", ".join(lacking)}: {system.how_to_get(lacking)}'))
    items.sort(key=rank)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist: a module, or TOGETHER, is one unit of work, handed out in the
    order collected (the slowest first)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            name = Path(nodeid.split('::')[0]).name
            return 'together' if name in TOGETHER else name
    config.option.loadscopereorder = False
    return ByModule(config, log)


RAN = set()  # the test modules this run reported on (under pytest-xdist: in the process that prints)


def pytest_runtest_logreport(report):
    RAN.add(Path(report.nodeid.split('::')[0]).name)


def pytest_terminal_summary(terminalreporter):
    not_run = defaultdict(list)  # (what is missing) -> test modules skipped for it
    for module in sorted(RAN):
        lacking = tuple(system.missing(system.NEEDS.get(module, [])))
        if lacking:
            not_run[lacking].append(module)
    if not not_run:
        return
    terminalreporter.section('not run on this machine')
    for lacking, modules in not_run.items():
        terminalreporter.write_line(f'{", ".join(modules)}: needs {", ".join(lacking)}; '
                                    f'to run them: {system.how_to_get(lacking)}')
