"""The Debian packages the test suite needs, in one place.

    python3 tools/system.py install   # as root with apt-get: install what is missing (make test does)
    python3 tools/system.py missing   # list what is missing, one line each

Standard library only: it runs before the kit's virtual environment exists. tests/conftest.py
reads NEEDS to skip, and name at the end, what could not run here.
"""
import ctypes.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

# package: (is it there?, what the suite uses it for)
PACKAGES = {
    'bubblewrap': (lambda: shutil.which('bwrap'), 'the grading sandbox'),
    'libseccomp2': (lambda: ctypes.util.find_library('seccomp'), "the grading judge's seccomp filter"),
    'postgresql': (lambda: Path('/usr/lib/postgresql/15/bin/initdb').exists(), 'a real PostgreSQL gradebook'),
    'chromium': (lambda: shutil.which('chromium'), 'JupyterLab in a real browser'),
    'npm': (lambda: shutil.which('npm'), "JupyterHub's proxy (configurable-http-proxy)"),
}
# what each test module needs besides the kit's Python: Debian packages, and 'root' for
# tests that make Unix accounts, cgroups or a server run as another user
NEEDS = {
    'test_sandbox.py': ['root', 'bubblewrap', 'libseccomp2'],
    'test_attacks.py': ['root', 'bubblewrap', 'libseccomp2'],
    'test_grading.py': ['root', 'bubblewrap', 'libseccomp2'],
    'test_visible_predicts_grade.py': ['root', 'bubblewrap', 'libseccomp2'],
    'test_mistakes.py': ['root', 'bubblewrap', 'libseccomp2'],
    'test_course_exchange.py': ['root', 'bubblewrap', 'libseccomp2', 'postgresql'],
    'test_course_gradebook.py': ['root', 'bubblewrap', 'libseccomp2', 'postgresql'],
    'test_course_hub.py': ['root', 'postgresql', 'npm'],
    'test_lab.py': ['chromium'],
}


def is_root():
    return hasattr(os, 'geteuid') and os.geteuid() == 0


def missing(names=PACKAGES):
    """The packages of `names` that are not on this machine ('root' when not run as root)."""
    out = []
    for name in names:
        if name == 'root':
            if not is_root():
                out.append(name)
        elif not PACKAGES[name][0]():
            out.append(name)
    return out


def how_to_get(names):
    """The command that would make tests needing `names` run here."""
    packages = [n for n in names if n != 'root']
    if not packages:
        return 'run `make test` as root'
    if not shutil.which('apt-get'):
        return f'install the Debian packages {", ".join(packages)} (on a Debian-like Linux) and run `make test` as root'
    return f'run `make test` as root, which installs {", ".join(packages)} itself (apt-get install {" ".join(packages)})'


def install():
    """apt-get install what is missing, when this is root on a Debian-like machine."""
    need = missing()
    if not need:
        return 0
    if not is_root() or not shutil.which('apt-get'):
        print(f'make test: not installing {", ".join(need)} (needs root and apt-get); '
              'the tests that need them will be skipped and listed at the end', file=sys.stderr)
        return 0
    print(f'make test: installing {", ".join(need)}', file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    subprocess.run(['apt-get', 'update', '-q'], env=env, check=True)
    subprocess.run(['apt-get', 'install', '-y', '-q', *need], env=env, check=True)
    return 0


if __name__ == '__main__':
    what = sys.argv[1] if len(sys.argv) > 1 else 'missing'
    if what == 'install':
        sys.exit(install())
    for name in missing():
        print(f'{name}: missing ({PACKAGES[name][1]})')
