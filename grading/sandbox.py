"""Each student's grading runs in a bubblewrap sandbox (Linux, Debian package `bubblewrap`).

Inside: the whole filesystem read-only, the student's own scratch folder the only writable
place besides a private /tmp, the output folder (every other student, the template, the
class gradebook) and the submissions folder hidden, no network (loopback only, which the
kernel and nbgrader share), its own PID namespace (nothing started inside outlives it), no
capabilities, and a pids cgroup that caps how many processes and threads it may have.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
PIDS = Path('/sys/fs/cgroup/pids')  # cgroup v1 pids controller
PIDS_MAX = 512  # tasks (processes and threads) per sandbox: nbgrader and a kernel use about 60
INSTALL = 'apt-get install bubblewrap'
# what still differs between the machine and the sandbox, so HOME and the caches point at /tmp
HOME = dict(HOME='/tmp/home', IPYTHONDIR='/tmp/home/.ipython', JUPYTER_RUNTIME_DIR='/tmp/home/runtime',
            MPLCONFIGDIR='/tmp/home/matplotlib', XDG_CACHE_HOME='/tmp/home/.cache', TMPDIR='/tmp')


def missing():
    """Why this machine cannot sandbox (a sentence), or None when bubblewrap works here."""
    bwrap = shutil.which('bwrap')
    if bwrap is None:
        return f'bubblewrap is not installed ({INSTALL})'
    try:
        probe = subprocess.run(command(['true'], writable=[], hidden=[]), capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f'bubblewrap does not run here ({e})'
    if probe.returncode:
        return f'bubblewrap does not run here ({probe.stderr.decode(errors="replace").strip()})'
    return None


def under_private(path):
    return any(Path(path).is_relative_to(top) for top in ('/tmp', '/run'))


def kit_and_python():
    """The kit and the Python it runs on, where the sandbox's private /tmp or /run would
    cover them (a kit cloned into /tmp, say): these are bound back, read-only."""
    here = {KIT, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), Path(sys.executable).resolve().parent}
    return sorted(str(p) for p in here if under_private(p))


def command(argv, writable, hidden):
    """The bwrap command line that runs `argv` with only `writable` folders writable and
    `hidden` folders replaced by empty ones (a writable folder inside a hidden one stays)."""
    cmd = ['bwrap', '--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--tmpfs', '/tmp',
           '--tmpfs', '/run', '--unshare-all', '--die-with-parent', '--new-session', '--cap-drop', 'ALL']
    for folder in kit_and_python():
        cmd += ['--ro-bind', folder, folder]
    for folder in hidden:
        if Path(folder).is_dir():
            cmd += ['--tmpfs', str(folder)]
    for folder in writable:
        cmd += ['--bind', str(folder), str(folder)]
    cmd += ['--chdir', str(writable[0]) if writable else '/tmp']
    return cmd + ['--'] + [str(a) for a in argv]


class Pids:
    """A pids cgroup under `parent` capping one sandbox at PIDS_MAX tasks; kill() ends every
    task in it. `path` is None (and `warning` says why) where the controller is not writable."""

    def __init__(self, parent, name):
        self.path, self.warning = None, None
        try:
            path = Path(parent) / name
            path.mkdir(parents=True, exist_ok=True)
            (path / 'pids.max').write_text(str(PIDS_MAX))
            self.path = path
        except OSError as e:
            self.warning = f'no cap on processes (the pids cgroup at {parent} is not writable: {e.strerror})'

    def prefix(self):
        """A shell prefix that moves the command into the cgroup before it starts."""
        if self.path is None:
            return []
        return ['sh', '-c', f'echo $$ > "$0" && exec "$@"', str(self.path / 'cgroup.procs')]

    def tasks(self):
        try:
            return [int(p) for p in (self.path / 'cgroup.procs').read_text().split()]
        except (OSError, ValueError, TypeError):
            return []

    def kill(self):
        if self.path is None:
            return
        for _ in range(200):
            left = self.tasks()
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        try:
            self.path.rmdir()
        except OSError:
            pass


def parent_cgroup():
    """(The pids cgroup folder this run's sandboxes go under, None), or (None, why not)."""
    if not (PIDS / 'cgroup.procs').exists():
        return None, f'no cgroup v1 pids controller at {PIDS}'
    path = PIDS / f'backprop-ninja-{os.getpid()}'
    try:
        path.mkdir(exist_ok=True)
        (path / 'pids.max').read_text()
    except OSError as e:
        return None, f'{PIDS} is not writable: {e.strerror}'
    return path, None


def remove_cgroups(parent):
    """Kill whatever is left in this run's cgroups (a worker stopped at its deadline) and remove them."""
    if parent is None or not Path(parent).is_dir():
        return
    for child in Path(parent).iterdir():
        if child.is_dir():
            p = Pids.__new__(Pids)
            p.path = child
            p.kill()
    try:
        Path(parent).rmdir()
    except OSError:
        pass


def run(argv, box, hidden, env, timeout, cgroup_parent, sandbox=True, log=None):
    """Run `argv` with `box` as the only writable folder (in bubblewrap unless sandbox=False),
    at most `timeout` seconds. Returns (exit code or None when stopped, [warnings])."""
    warnings = []
    pids = Pids(cgroup_parent, Path(box).parent.name) if cgroup_parent else None
    if pids is not None and pids.path is None:
        warnings.append(pids.warning)
    cmd = command(argv, writable=[box], hidden=hidden) if sandbox else list(argv)
    cmd = (pids.prefix() if pids else []) + cmd
    full = dict(env, **HOME) if sandbox else dict(env)
    proc = subprocess.Popen(cmd, env=full, cwd=str(box), stdin=subprocess.DEVNULL,
                            stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # bwrap's own; its PID namespace dies with it
        except ProcessLookupError:
            pass
        proc.wait()
        if pids:
            pids.kill()
    return code, warnings


def warn_unsandboxed():
    print('\n' + '!' * 78 + '\nWARNING: --no-sandbox: this class is graded WITHOUT a sandbox. A student\'s code\n'
          'runs with your permissions: it can read other submissions, change the kit, the\n'
          'gradebook and other students\' grades, and leave processes running. Grade only\n'
          f'code you trust this way; otherwise install bubblewrap ({INSTALL}).\n' + '!' * 78 + '\n',
          file=sys.stderr)
