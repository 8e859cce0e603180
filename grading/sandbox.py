"""The sandbox one student's judge (grading/judge.py) runs in: bubblewrap (Debian package
`bubblewrap`), started as root without a user namespace. Its walls:

- files: an empty root with read-only binds of only what the judge needs: /usr (with the
  /lib, /lib64, /bin, /sbin links), /etc/ld.so.cache, the kit's Python (its base prefix and
  the .venv) and, from the kit, `helpers`, `checks/`, `grading/__init__.py`,
  `grading/judge.py` and `data/`. Never solutions/, nbsrc/, the course or output folders,
  the submissions, /root, /home, /srv, /var: they are not there at all;
- the only writable places are RAM folders, each with a size: the scratch folder (its
  working folder and HOME), /tmp and /dev/shm; they vanish with the sandbox;
- a user of no account: uid and gid 65534, no groups, no capabilities, no new privileges
  (setpriv inside bwrap), never root or the instructor;
- an allow-listed environment (--clearenv): no MAKEFLAGS, no paths of the grader's folders;
- one memory limit for the whole sandbox (a cgroup-v1 memory cgroup, which the RAM
  folders are charged to as well), and a pids cgroup capping its tasks;
- its own PID, network (loopback only), IPC and UTS namespaces: it sees no process of the
  machine and reaches no socket outside it (no Unix socket is bound in); when it is
  stopped, everything in it ends (--die-with-parent, and the cgroups are emptied);
- stdin, stdout and a pair of pipes per notebook connect it to the worker, stderr is a pipe
  the worker reads at most 4 KB of; no other descriptor enters. The worker reads every pipe
  in frames of capped size.
Inside it, the judge's child that runs student code keeps only its own two pipes, loads a
seccomp filter (no thread, no process, no exec) and takes its working folder off sys.path, so
that no module the student's code writes can be imported (grading/judge.py).
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
CGROUPS = Path('/sys/fs/cgroup')
PIDS_MAX = 64  # the judge: bwrap's init, P and one child, with room to spare
SCRATCH = '/scratch'
SIZES_MB = {SCRATCH: 256, '/tmp': 64, '/dev/shm': 16}  # each RAM folder's size; all count towards memory
NOBODY = '65534'
INSTALL = 'apt-get install bubblewrap'
# the whole environment inside: nothing of the grader's own
ENVIRONMENT = dict(PATH='/usr/bin:/bin', HOME=SCRATCH, LANG='C.UTF-8', OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
                   MPLBACKEND='Agg', MPLCONFIGDIR=f'{SCRATCH}/.matplotlib', IPYTHONDIR=f'{SCRATCH}/.ipython',
                   PYTHONDONTWRITEBYTECODE='1', TMPDIR='/tmp')


def kit_binds():
    """What the judge reads: the kit's Python and the few kit files it imports."""
    paths = [Path(sys.base_prefix), Path(sys.prefix), KIT / 'helpers', KIT / 'checks', KIT / 'grading' / '__init__.py',
             KIT / 'grading' / 'judge.py', KIT / 'data']
    return [str(p) for p in dict.fromkeys(p.resolve() for p in paths) if not p.is_relative_to('/usr')]


def command(argv, binds=()):
    """The bwrap command line that runs `argv` as nobody behind the walls above (`binds`:
    more paths bound read-only, for the tests)."""
    cmd = ['bwrap', '--unshare-pid', '--unshare-net', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup-try',
           '--die-with-parent', '--new-session', '--clearenv', '--ro-bind', '/usr', '/usr', '--perms', '0755',
           '--dir', '/etc', '--ro-bind-try', '/etc/ld.so.cache', '/etc/ld.so.cache', '--proc', '/proc', '--dev', '/dev']
    for link in ('lib', 'lib64', 'bin', 'sbin'):
        if Path(f'/{link}').is_symlink():
            cmd += ['--symlink', os.readlink(f'/{link}'), f'/{link}']
    for folder, mb in SIZES_MB.items():
        cmd += ['--perms', '1777', '--size', str(mb * 2**20), '--tmpfs', folder]
    paths = kit_binds() + [str(b) for b in binds]
    for parent in dict.fromkeys(str(p) for path in paths for p in reversed(Path(path).parents) if str(p) != '/'):
        cmd += ['--perms', '0755', '--dir', parent]
    for path in paths:
        cmd += ['--ro-bind', path, path]
    for key, value in ENVIRONMENT.items():
        cmd += ['--setenv', key, value]
    cmd += ['--chdir', SCRATCH, '--', shutil.which('setpriv') or '/usr/bin/setpriv', f'--reuid={NOBODY}',
            f'--regid={NOBODY}', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs']
    return cmd + [str(a) for a in argv]


def missing():
    """Why this machine cannot sandbox (a sentence), or None when bubblewrap works here."""
    if shutil.which('bwrap') is None:
        return f'bubblewrap is not installed ({INSTALL})'
    try:
        probe = subprocess.run(command(['/usr/bin/true']), capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f'bubblewrap does not run here ({e})'
    if probe.returncode:
        return f'bubblewrap does not run here ({probe.stderr.decode(errors="replace").strip()})'
    return None


# ---------------------------------------------------------------- cgroups: memory and tasks

def parent_cgroups():
    """({'pids': folder, 'memory': folder} this run's sandboxes go under, [warnings]). Those
    of a run that was killed (its process is gone) are removed first."""
    parents, warnings = {}, []
    for kind, knob in (('pids', 'pids.max'), ('memory', 'memory.limit_in_bytes')):
        for stale in (CGROUPS / kind).glob('backprop-ninja-*'):
            pid = stale.name.removeprefix('backprop-ninja-')
            if pid.isdigit() and not Path(f'/proc/{pid}').exists():
                with suppress(OSError):  # another account's, say
                    remove(stale)
        path = CGROUPS / kind / f'backprop-ninja-{os.getpid()}'
        try:
            path.mkdir(exist_ok=True)
            (path / knob).read_text()
            parents[kind] = path
        except OSError as e:
            warnings.append(f'no {kind} cgroup ({CGROUPS / kind} is not writable: {e.strerror})')
    return parents, warnings


def cgroups(parents, name, memory_mb):
    """{kind: folder} of a pids cgroup (at most PIDS_MAX tasks) and a memory cgroup (`memory_mb`
    for all of it, RAM folders included) for one sandbox, under `parents`."""
    paths = {kind: Path(parent) / name for kind, parent in (parents or {}).items()}
    limits = {'pids.max': PIDS_MAX, 'memory.limit_in_bytes': memory_mb * 2**20,
              'memory.memsw.limit_in_bytes': memory_mb * 2**20}  # the last where swap is accounted
    for path in paths.values():
        path.mkdir(exist_ok=True)
        for knob, value in limits.items():
            if (path / knob).exists():
                (path / knob).write_text(str(value))
    return paths


def remove(cgroup):
    """Kill every task left in `cgroup` and the cgroups under it (a worker stopped at its deadline
    leaves its sandbox's), then remove them."""
    for sub in [c for c in cgroup.iterdir() if c.is_dir()] if cgroup.is_dir() else []:
        remove(sub)
    for _ in range(200):
        left = []
        with suppress(OSError, ValueError):
            left = [int(p) for p in (cgroup / 'cgroup.procs').read_text().split()]
        if not left:
            break
        for pid in left:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    with suppress(OSError):
        cgroup.rmdir()


def remove_cgroups(cgroups):
    """The cgroups of {kind: folder}, what is left in them killed, removed."""
    for cgroup in cgroups.values():
        remove(cgroup)


class Box:
    """`argv` running in a sandbox (or, with sandbox=False, as a plain child with the same
    environment): .stdin and .stdout are pipes to it, and .channels `channels` more pairs of
    pipes (to it, from it), whose far ends it gets as 'IN,OUT' arguments; stop() ends it all."""

    def __init__(self, argv, parents, name, memory_mb, sandbox=True, binds=(), channels=0):
        self.cgroups = cgroups(parents if sandbox else None, name, memory_mb)
        pipes = [(os.pipe(), os.pipe()) for _ in range(channels)]
        far = [(to[0], fro[1]) for to, fro in pipes]
        argv = list(argv) + [f'{a},{b}' for a, b in far]
        procs = [str(p / 'cgroup.procs') for p in self.cgroups.values()]  # entered before bwrap starts
        enter = [f'echo $$ > "${i + 1}" && ' for i in range(len(procs))]
        prefix = ['sh', '-c', f'{"".join(enter)}shift {len(procs)} && exec "$@"', 'sh', *procs] if procs else []
        cmd = prefix + command(argv, binds) if sandbox else argv
        env = ENVIRONMENT if sandbox else dict(os.environ, PYTHONDONTWRITEBYTECODE='1', OMP_NUM_THREADS='1',
                                               MKL_NUM_THREADS='1', MPLBACKEND='Agg')
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True, cwd='/',
                                     pass_fds=[fd for pair in far for fd in pair])
        for fd in (fd for pair in far for fd in pair):
            os.close(fd)
        self.stdin, self.stdout = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        self.channels = [(to[1], fro[0]) for to, fro in pipes]

    def stop(self):
        """End it; up to 4 KB of what it wrote to stderr."""
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # bwrap's own: its PID namespace dies with it
        remove_cgroups(self.cgroups)
        self.proc.wait()
        said = self.proc.stderr.read(4096)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr, *(fd for pair in self.channels for fd in pair)):
            with suppress(OSError):
                os.close(f) if isinstance(f, int) else f.close()
        return said.decode(errors='replace')


def warn_unsandboxed():
    print('\n' + '!' * 78 + '\nWARNING: --no-sandbox: this class is graded WITHOUT a sandbox. A student\'s code\n'
          'runs with your permissions: it can read other submissions, change the kit, the\n'
          'gradebook and other students\' grades, and leave processes running. Grade only\n'
          f'code you trust this way; otherwise install bubblewrap ({INSTALL}).\n' + '!' * 78 + '\n',
          file=sys.stderr)
