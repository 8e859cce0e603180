"""The judge: the one process that runs a student's code, in their sandbox.

    python -m grading.judge [IN,OUT ...]   (grading/worker.py starts it with a pair of pipes per notebook)

P imports torch (one thread), IPython, helpers, checks and pyseccomp once, then forks a server
per pair of pipes, so that a student's notebooks run at once. A server forks a child C that
closes every descriptor but its own two pipes, loads a seccomp filter, takes its references
and only then runs the cells (a cell that runs too long or kills C costs a new C, which runs
the cells before it again, without it); then, one graded cell at a time, C runs `spec.run`
on the worker's inputs, counting the autograd nodes made. P and the servers run no student code.
Frames: 8 bytes of length, then a torch.save payload read with torch.load(weights_only=True)
under a size cap.
"""
import gc
import io
import os
import select
import signal
import struct
import sys
import time
import traceback
from contextlib import suppress

os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('MKL_NUM_THREADS', '1')
import torch  # noqa: E402 (after the thread counts)

MAX_FRAME = 64 * 2**20  # inputs or outputs of one graded cell: a few MB at most
MAX_TEXT = 400
CHILD_STEPS = '100'  # what the notebook's own cells train with: nothing they train counts


# what C writes with holds its references from import, before any student code: a cell that
# replaces torch.save or os.write later changes nothing here
def encode(message, save=torch.save, BytesIO=io.BytesIO, pack=struct.pack):
    buffer = BytesIO()
    save(message, buffer)
    return pack('<Q', buffer.tell()) + buffer.getvalue()


def send(fd, data, write=os.write):
    view = memoryview(data)
    while view:
        view = view[write(fd, view):]


def read_exactly(fd, n, deadline=None):
    data = bytearray()
    while len(data) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(n - len(data), 2**20))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)


def read_frame(fd, cap=MAX_FRAME, deadline=None):
    """The payload bytes of one frame; EOFError, TimeoutError, or ValueError over the cap."""
    (n,) = struct.unpack('<Q', read_exactly(fd, 8, deadline))
    if n > cap:
        raise ValueError(f'a frame of {n} bytes, over the cap of {cap}')
    return read_exactly(fd, n, deadline)


def decode(data, load=torch.load, BytesIO=io.BytesIO):
    return load(BytesIO(data), weights_only=True)


# ---------------------------------------------------------------- P: imports once, forks a child per notebook

def prepare(dataset=None):
    """Everything a notebook of this kit imports, imported once before any fork, and the
    dataset (from descriptor `dataset` if given)."""
    import ctypes.util
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    # C can start no thread: a cell's own thread counts (an honest habit) would kill it at the next
    # op, or raise where the student's kernel took them
    torch.set_num_threads = torch.set_num_interop_threads = lambda n: None
    import matplotlib.pyplot  # noqa: F401 (MPLBACKEND=Agg: sandbox.Box sets it)
    import torch.nn.functional as F  # noqa: F401
    import tqdm  # noqa: F401
    import helpers
    import checks
    for name in checks.MODULES:
        __import__(name)
    import checks.handin  # noqa: F401
    # the names' dataset, once for every notebook: the worker's, sent while P imported torch (else
    # built here); every call that asks for it gets a copy of its own
    built = [tuple(pair) for pair in decode(read_frame(dataset, 2**27))] if dataset else checks.training.splits(3)
    cached, build = checks.training.splits, helpers.split_dataset
    checks.training.splits = lambda block_size=3: built if block_size == 3 else cached(block_size)
    words = helpers.read_words()
    stoi = helpers.vocabulary(words)[0]

    def split_dataset(w, s, block_size=3, seed=42):
        if (block_size, seed) != (3, 42) or w != words or s != stoi:
            return build(w, s, block_size, seed)
        return [tuple(t.clone() for t in pair) for pair in built]
    helpers.split_dataset = helpers.data.split_dataset = helpers.network.split_dataset = split_dataset
    # ldconfig knows no library in the sandbox: name them, as Debian installs them
    find = ctypes.util.find_library
    ctypes.util.find_library = lambda name: {'c': 'libc.so.6', 'seccomp': 'libseccomp.so.2'}.get(name) or find(name)
    import pyseccomp  # noqa: F401
    ctypes.util.find_library = find
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config
    shell = InteractiveShell.instance(config=Config(HistoryManager=Config(enabled=False)))

    def refuse_shell(*args, **kwargs):
        raise PermissionError('shell commands are not run when grading')
    shell.system = shell.getoutput = refuse_shell
    # nobody reads tracebacks here, and formatting one keeps its frames' locals alive (a memory hog's list)
    shell.showtraceback = shell.showsyntaxerror = lambda *args, **kwargs: None
    return shell


class Unasked(Exception):
    """C wrote to its pipe while it should have read: no honest C speaks unasked."""


class Child:
    """A forked C running the cells not in `skip`, reporting over a pipe."""

    def __init__(self, shell, job, skip):
        (from_parent, self.to), (self.fro, to_parent) = os.pipe(), os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            try:  # C closes every descriptor but its own two pipes
                child(shell, job, skip, from_parent, to_parent)
            finally:
                os._exit(0)
        os.close(from_parent)
        os.close(to_parent)
        os.set_blocking(self.to, False)  # ask_child watches C's answer while it writes

    def stop(self):
        """Kill it if it still runs; how it ended: 'exit code N' or 'signal N'."""
        os.kill(self.pid, signal.SIGKILL)  # a child that has exited stays a zombie until waited for
        _, status = os.waitpid(self.pid, 0)
        os.close(self.to)
        os.close(self.fro)
        return f'signal {os.WTERMSIG(status)}' if os.WIFSIGNALED(status) else f'exit code {os.WEXITSTATUS(status)}'


def run_cells(shell, job, ran, skip):
    """Run the notebook's cells in a C, replacing it when a cell runs too long or kills it (the
    cells before it run again, the broken one is skipped from then on); ran[i] gets how cell i
    ran, (status, ename, evalue), where still None. The live C, or None if the time ran out."""
    cells, timeout = job['cells'], job['timeout']
    deadline = time.monotonic() + job['notebook_timeout']
    while True:
        c = Child(shell, job, skip)
        for i in [i for i in range(len(cells)) if i not in skip] + [None]:  # None: C says it is done
            left = deadline - time.monotonic()
            try:
                report = decode(read_frame(c.fro, 2**20, time.monotonic() + max(min(timeout, left), 0)))
                if report == 'done':
                    return c
                assert report[0] == i
                how = tuple(report[1:])
            except TimeoutError:
                c.stop()
                if i is None or left <= timeout:  # the notebook's time ran out
                    for j in range(len(cells) if i is None else i, len(cells)):
                        if j not in skip:
                            ran[j] = ran[j] or ('timeout', 'NotebookTimeout', str(job['notebook_timeout']))
                    return None
                how = ('timeout', 'CellTimeout', str(timeout))
            except Exception:  # it died, or sent what no honest C sends
                how = ('crashed', 'Died', c.stop())
                if i is None:
                    return None
            ran[i] = ran[i] or how
            if how[0] in ('timeout', 'crashed'):
                skip.add(i)
                break


def ask_child(c, data, deadline):
    """Send C its next graded cell; Unasked if C writes while it should read (code in a cell
    wrote to its pipe), EOFError if it died, TimeoutError if it does neither."""
    view = memoryview(data)
    while view:
        spoke, ready, _ = select.select([c.fro], [c.to], [], max(deadline - time.monotonic(), 0))
        if spoke:
            raise Unasked if os.read(c.fro, 1) else EOFError
        if not ready:
            raise TimeoutError
        with suppress(BlockingIOError):
            view = view[os.write(c.to, view):]


def judge_notebook(shell, job, wire_in, wire_out):
    """One notebook: its cells, then its graded cells one at a time, as the worker asks."""
    ran, skip = [None] * len(job['cells']), set()
    c = run_cells(shell, job, ran, skip) or False  # False: the notebook ran out of time, no second try
    send(wire_out, encode({'cells': ran}))
    while (ask := decode(read_frame(wire_in))) != 'end':
        gid = ask['gid']
        if c is None:  # C died in a graded call: the cells again, quietly, those that broke it left out
            c = run_cells(shell, job, [None] * len(job['cells']), skip) or False
        if c is False:
            send(wire_out, encode({'gid': gid, 'failed': ('timeout', 'NotebookTimeout', str(job['notebook_timeout']))}))
            continue
        try:
            ask_child(c, encode(ask), time.monotonic() + job['timeout'])
            del ask
            reply = read_frame(c.fro, MAX_FRAME, time.monotonic() + job['timeout'])
            send(wire_out, struct.pack('<Q', len(reply)) + reply)
        except Exception as e:  # it ran too long, died, or sent a frame over the cap: said as a cell would be
            how, c = c.stop(), None
            failed = ('timeout', 'CellTimeout', str(job['timeout'])) if isinstance(e, TimeoutError) else \
                ('crashed', 'Unasked' if isinstance(e, Unasked) else 'Died', how)
            send(wire_out, encode({'gid': gid, 'failed': failed}))
    if c:
        c.stop()


def last_word(wire_out, e):
    """What the worker reads as the judge's last word."""
    with suppress(OSError):
        send(wire_out, encode({'judge_error': f'{type(e).__name__}: {e}'[:MAX_TEXT]}))


def main():
    """P: the imports, then a forked server per channel (one per notebook, as descriptors 'IN,OUT'
    in argv; without them, stdin and stdout) that says it is ready and judges the notebook sent."""
    channels = [tuple(map(int, arg.split(','))) for arg in sys.argv[1:]] or [(os.dup(0), os.dup(1))]
    dataset = os.dup(0) if sys.argv[1:] else None  # with channels, stdin brings the dataset
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    try:
        shell = prepare(dataset)
        import ctypes
        ctypes.CDLL('libc.so.6').prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no /proc/<P>/mem for C
    except Exception as e:
        for _, wire_out in channels:
            last_word(wire_out, e)
        sys.exit(2)
    wires, servers = {fd for pair in channels for fd in pair}, []
    for wire_in, wire_out in channels:
        servers.append(os.fork())
        if servers[-1] == 0:
            for fd in wires - {wire_in, wire_out}:
                os.close(fd)
            try:
                send(wire_out, encode('ready'))
                judge_notebook(shell, decode(read_frame(wire_in)), wire_in, wire_out)
            except Exception as e:
                last_word(wire_out, e)
            os._exit(0)
    for fd in wires:
        os.close(fd)
    for pid in servers:
        os.waitpid(pid, 0)


# ---------------------------------------------------------------- C: the student's code

def no_more_processes(pid):
    """The seccomp filter: no thread, process or exec; no tracing; signals only to itself."""
    import errno
    import pyseccomp as sc
    f = sc.SyscallFilter(sc.ALLOW)
    for name in ('clone', 'fork', 'vfork', 'execve', 'execveat', 'ptrace', 'process_vm_readv',
                 'process_vm_writev', 'unshare', 'setns', 'mount', 'pivot_root', 'chroot', 'setsid', 'setpgid'):
        f.add_rule(sc.ERRNO(errno.EPERM), name)
    f.add_rule(sc.ERRNO(errno.ENOSYS), 'clone3')
    for name in ('kill', 'tkill', 'tgkill'):
        f.add_rule(sc.ERRNO(errno.EPERM), name, sc.Arg(0, sc.NE, pid))
    f.load()


class Sink(io.TextIOBase):
    """Where the cells' printing goes: nowhere (the feedback shows the notebook as handed in)."""

    def write(self, text):
        return len(text)


def child(shell, job, skip, wire_in, wire_out):
    import ctypes
    import resource
    import checks
    pid, cells, graded, memory_mb = os.getpid(), job['cells'], dict(job['graded']), job['memory_mb']
    ctypes.CDLL('libc.so.6').prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: its own /proc files are its own again
    low, high = sorted((wire_in, wire_out))  # no descriptor but its own two pipes: none to the worker
    os.closerange(3, low)
    os.closerange(low + 1, high)
    os.closerange(high + 1, 2**16)
    with open('/proc/self/oom_score_adj', 'w') as f:
        f.write('1000')  # at the sandbox's memory limit, the kernel stops C, not P
    # a MemoryError for a cell asking for more than half the limit, before the limit stops C
    used = int(open('/proc/self/status').read().split('VmData:')[1].split()[0]) * 1024
    hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
    limit = used + memory_mb * 2**19 if hard == resource.RLIM_INFINITY else min(hard, used + memory_mb * 2**19)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.environ['BPN_STEPS'] = CHILD_STEPS
    # references taken before any student code runs: a cell that replaces these later changes nothing here
    counter, frame, put, read, load = torch._C._autograd._get_sequence_nr, encode, send, read_frame, decode
    runs = {gid: checks.spec(gid).run for gid in graded}

    def reply(message):
        put(wire_out, frame(message))
        sys.stdout = sys.stderr = Sink()

    no_more_processes(pid)
    sys.stdout = sys.stderr = Sink()
    here = os.getcwd()  # no module of the student's own: a module written here would hold code the audit never read
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != here]
    for i, source in enumerate(cells):
        if i in skip:
            continue
        result = shell.run_cell(source, store_history=False)
        error = result.error_before_exec or result.error_in_exec
        report = (i, 'ok', '', '') if error is None else (i, 'error', type(error).__name__, str(error)[:MAX_TEXT])
        # a failed cell's frames (and what they hold: a memory hog's list) go with its traceback
        if error is not None:
            traceback.clear_frames(error.__traceback__)
            result = error = shell.last_execution_result = sys.last_type = sys.last_value = sys.last_traceback = None
            gc.collect()
        put(wire_out, frame(report))
    reply('done')
    while True:
        try:
            data = read(wire_in)
        except EOFError:
            return
        start, outputs, nodes, gid = counter(), [], [], None
        try:
            ask = load(data)
            gid = ask['gid']
            if graded[gid] not in shell.user_ns:
                reply({'gid': gid, 'missing': True})
                continue
            answer = shell.user_ns[graded[gid]]
            for case in ask['cases']:
                outputs.append(runs[gid](answer, case))
                nodes.append(counter() - start)
                start = counter()
        except BaseException as e:  # spec.run never raises; only the process's own trouble gets here
            outputs = nodes = None
            reply({'gid': gid, 'failed': ('crashed', type(e).__name__, type(e).__name__)})
            continue
        if nodes:
            nodes[-1] += counter() - start
        reply({'gid': gid, 'outputs': outputs, 'autograd_nodes': nodes})


if __name__ == '__main__':
    main()
