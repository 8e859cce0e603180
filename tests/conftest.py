"""What a test module needs besides the kit's Python (tools/system.py NEEDS): where it is
missing, its tests are skipped, and the end of the run names, one line each, what could
not run here and the command that would make it run."""
import sys
from collections import defaultdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'tools'))
import system  # noqa: E402

NOT_RUN = defaultdict(list)  # (what is missing) -> test modules skipped for it


def pytest_collection_modifyitems(config, items):
    for item in items:
        lacking = tuple(system.missing(system.NEEDS.get(item.path.name, [])))
        if lacking:
            if item.path.name not in NOT_RUN[lacking]:
                NOT_RUN[lacking].append(item.path.name)
            item.add_marker(pytest.mark.skip(reason=f'needs {", ".join(lacking)}: {system.how_to_get(lacking)}'))


def pytest_terminal_summary(terminalreporter):
    if not NOT_RUN:
        return
    terminalreporter.section('not run on this machine')
    for lacking, modules in NOT_RUN.items():
        terminalreporter.write_line(f'{", ".join(modules)}: needs {", ".join(lacking)}; '
                                    f'to run them: {system.how_to_get(lacking)}')
