"""What the course tests share: a throwaway PostgreSQL server, throwaway Unix accounts, a
class of students who hand in notebook 1 (right, with a classic slip, blank), and commands
run as an instructor would type them."""
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import tempfile
import uuid
from pathlib import Path

import nbformat
import pytest

from tests.kit import BIN, ROOT, blank, mutated, solved

PG = Path('/usr/lib/postgresql/15/bin')
NB = '01_atomic_backprop'
POINTS = dict(test_stage1=3, test_stage2=2, test_stage3=3, test_stage4=2)
# the classic slip of notebook 1: the biased variance's gradient, 1/n where it is 1/(n-1)
BESSEL = ('stage3', 'torch.ones_like(bndiff) / (n - 1) * dbnvar', 'torch.ones_like(bndiff) / n * dbnvar')
WORK = {  # what each kind of student hands in, and what it scores on notebook 1
    'right': (lambda: solved(NB), sum(POINTS.values())),
    'slip': (lambda: mutated(NB, BESSEL), sum(POINTS.values()) - POINTS['test_stage3']),
    'blank': (lambda: blank(NB), 0),
}
ENV = dict(os.environ, PATH=f'{BIN}{os.pathsep}{os.environ["PATH"]}', BPN_STEPS='500')


def run(*cmd, user=None, cwd=None, env=None, check=True, timeout=900):
    """A command, as root or as Unix `user` (runuser, with that user's HOME)."""
    env = dict(env or ENV)
    if user:
        env.update(HOME=pwd.getpwnam(user).pw_dir, USER=user, LOGNAME=user)
        cmd = ('runuser', '-u', user, '--', *cmd)
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f'{" ".join(map(str, cmd))} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}')
    return done


def write_class(folder, kinds):
    """A SUBMISSIONS folder: {student: kind of work} -> folder/<student>/01_atomic_backprop.ipynb."""
    for student, kind in kinds.items():
        (folder / student).mkdir(parents=True)
        nbformat.write(WORK[kind][0](), folder / student / f'{NB}.ipynb')
    return folder


class Postgres:
    """A PostgreSQL 15 cluster of its own, run by the postgres user on a Unix socket only, where
    every connection needs a password (scram-sha-256 for every line of pg_hba.conf). The
    graders and the formgrader connect as the role `graders`, whose password is in the
    database URL the instructor keeps in their mode-600 nbgrader_config.py."""
    ROLE = 'graders'

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.chmod(0o755)  # the socket is in it: every account may try, none gets in without a password
        shutil.chown(self.folder, 'postgres', 'postgres')
        self.data = self.folder / 'data'
        self.superuser = secrets.token_hex(16)  # the postgres role's password: only these tests know it
        self.password = secrets.token_hex(16)  # the graders' password
        pwfile = self.folder / 'superuser-password'
        pwfile.write_text(self.superuser + '\n')
        pwfile.chmod(0o600)
        shutil.chown(pwfile, 'postgres', 'postgres')
        run(PG / 'initdb', '-D', self.data, '--auth=scram-sha-256', f'--pwfile={pwfile}', '-U', 'postgres',
            user='postgres')
        pwfile.unlink()
        run(PG / 'pg_ctl', '-D', self.data, '-l', self.folder / 'log', '-w', '-o',
            f"-k {self.folder} -c listen_addresses=''", 'start', user='postgres')
        self.sql(f"create role {self.ROLE} login password '{self.password}'")

    def sql(self, command, database='postgres'):
        """One SQL command as the postgres superuser, with its password."""
        return run(PG / 'psql', '-w', '-h', self.folder, '-U', 'postgres', '-d', database, '-c', command,
                   user='postgres', env=dict(ENV, PGPASSWORD=self.superuser))

    def database(self):
        """A fresh empty database owned by the graders' role; its SQLAlchemy URL, password included."""
        name = 'gb_' + uuid.uuid4().hex[:8]
        self.sql(f'create database {name} owner {self.ROLE}')
        return f'postgresql+psycopg://{self.ROLE}:{self.password}@/{name}?host={self.folder}'

    def stop(self):
        run(PG / 'pg_ctl', '-D', self.data, '-m', 'immediate', 'stop', user='postgres', check=False)
        shutil.rmtree(self.folder, ignore_errors=True)


def as_root():
    if os.geteuid() != 0:
        pytest.fail('the course tests add Unix accounts and run PostgreSQL as its own user: run them as root (CI does)')


@pytest.fixture(scope='session')
def postgres():
    as_root()
    if not (PG / 'initdb').exists():
        pytest.fail('PostgreSQL 15 is not installed (apt-get install postgresql; make test does it as root)')
    server = Postgres(tempfile.mkdtemp(prefix='bpn-pg-'))  # pytest's own folders are root's only
    try:
        yield server
    finally:
        server.stop()


def course_folder(path, db_url=None):
    """A course folder as an instructor sets it up: the kit's nbgrader_config.py and its
    solutions as the source, the assignment generated with the real CLI (into `db_url`),
    run as .venv/bin/nbgrader with no virtual environment activated."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / 'nbgrader_config.py', path)
    shutil.copytree(ROOT / 'solutions', path / 'solutions')
    bare = os.pathsep.join(d for d in os.environ['PATH'].split(os.pathsep) if Path(d) != BIN)
    run(BIN / 'nbgrader', 'generate_assignment', 'backprop_ninja', '--force', '--log-level=WARN',
        *([f'--db={db_url}'] if db_url else []), cwd=path, env=dict(ENV, PATH=bare))  # no venv activated
    return path


@pytest.fixture(scope='session')
def traversable_root():
    """Python lives in /root/.pyenv and /root is mode 700 on CI: other accounts may pass
    through /root (o+x: no listing) while the test runs; the old mode comes back after."""
    mode = stat.S_IMODE(os.stat('/root').st_mode)
    os.chmod('/root', mode | stat.S_IXOTH)
    try:
        yield
    finally:
        os.chmod('/root', mode)


@pytest.fixture(scope='session')
def accounts():
    """make(name, group=None) adds a throwaway Unix account (in a throwaway group); every one
    is removed with its home and its groups at the end."""
    as_root()
    made, groups = [], []

    def make(name, group=None):
        if group and group not in groups:
            run('groupadd', group)
            groups.append(group)
        run('useradd', '--create-home', '--shell', '/bin/bash', *(['--groups', group] if group else []), name)
        made.append(name)
        return name
    try:
        yield make
    finally:
        for name in made:
            kill_processes_of(pwd.getpwnam(name).pw_uid)
            subprocess.run(['userdel', '-r', name], capture_output=True)
        for group in groups:
            subprocess.run(['groupdel', group], capture_output=True)


def kill_processes_of(uid):
    """SIGKILL, by process id, every process the throwaway account `uid` still runs."""
    for proc in Path('/proc').glob('[0-9]*'):
        try:
            if proc.stat().st_uid == uid:
                os.kill(int(proc.name), 9)
        except (OSError, ValueError):
            pass
