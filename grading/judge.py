"""The judge: the one process that runs a student's code, in their sandbox.

    python -m grading.judge [IN,OUT ...]   (grading/worker.py starts it with a pair of pipes per notebook)

P imports torch (one thread), IPython, helpers, checks and pyseccomp once, then forks a server
per pair of pipes, so that a student's notebooks run at once; a server forks a child C per
notebook. C closes every descriptor but its own two pipes, loads a seccomp filter (no thread,
process, exec or ptrace; signals only to itself), takes its references (the autograd node
counter, its pipe, each check's `run`) and only then runs the cells in an IPython shell
(prints dropped, shell escapes refused), reporting each as ok, error or timeout. A cell that
runs too long or kills C: the server kills C and forks another that runs the cells before it
again, without the broken one. Then, one graded cell at a time, C runs `spec.run(answer,
case)` on the inputs the worker sends, counting the autograd graph nodes made from reading
them to sending the outputs. P and the servers run no student code.
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

os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('MKL_NUM_THREADS', '1')

MAX_FRAME = 64 * 2**20  # inputs or outputs of one graded cell: a few MB at most
MAX_TEXT = 400
CHILD_STEPS = '500'  # what the notebook's own cells train with: nothing they train counts
MISSING = object()


def encode(message):
    import torch
    buffer = io.BytesIO()
    torch.save(message, buffer)
    return struct.pack('<Q', buffer.tell()) + buffer.getvalue()


def send(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def read_exactly(fd, n, deadline=None):
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(n - got, 2**20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        got += len(chunk)
    return b''.join(chunks)


def read_frame(fd, cap=MAX_FRAME, deadline=None):
    """The payload bytes of one frame; EOFError, TimeoutError, or ValueError over the cap."""
    (n,) = struct.unpack('<Q', read_exactly(fd, 8, deadline))
    if n > cap:
        raise ValueError(f'a frame of {n} bytes, over the cap of {cap}')
    return read_exactly(fd, n, deadline)


def decode(data):
    import torch
    return torch.load(io.BytesIO(data), weights_only=True)


# ---------------------------------------------------------------- P: imports once, forks a child per notebook

def prepare(dataset=None):
    """Everything a notebook of this kit imports, imported once before any fork, and the
    dataset (from descriptor `dataset` if given)."""
    import ctypes.util
    import torch
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot  # noqa: F401
    import torch.nn.functional  # noqa: F401
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
    cfg = Config()
    cfg.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=cfg)

    def refuse_shell(*args, **kwargs):
        raise PermissionError('shell commands are not run when grading')
    shell.system = shell.getoutput = refuse_shell
    # nobody reads tracebacks here, and formatting one keeps its frames' locals alive (a memory hog's list)
    shell.showtraceback = shell.showsyntaxerror = lambda *args, **kwargs: None
    return shell


class Child:
    """A forked C running the cells not in `skip`, reporting over a pipe."""

    def __init__(self, shell, job, skip):
        from_parent, to_child = os.pipe()
        from_child, to_parent = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(to_child)
            os.close(from_child)
            try:
                child(shell, job, skip, from_parent, to_parent)
            finally:
                os._exit(0)
        os.close(from_parent)
        os.close(to_parent)
        self.to, self.fro = to_child, from_child

    def stop(self):
        """Kill it if it still runs; how it ended: 'exit code N' or 'signal N'."""
        os.kill(self.pid, signal.SIGKILL)  # a child that has exited stays a zombie until waited for
        _, status = os.waitpid(self.pid, 0)
        os.close(self.to)
        os.close(self.fro)
        return f'signal {os.WTERMSIG(status)}' if os.WIFSIGNALED(status) else f'exit code {os.WEXITSTATUS(status)}'


def run_cells(shell, job, cells_done, skip):
    """Run the notebook's cells in a child, replacing it when a cell runs too long or kills it
    (the cells before it run again, the broken one is skipped from then on). Fills
    cells_done[i] with (status, ename, evalue) where still None. The live child, or None
    when the notebook's time ran out."""
    cells, timeout = job['cells'], job['timeout']
    deadline = time.monotonic() + job['notebook_timeout']
    while True:
        order = [i for i in range(len(cells)) if i not in skip]
        c = Child(shell, job, skip)
        at = 0  # the position in `order` of the cell C runs now
        while True:
            left = deadline - time.monotonic()
            try:
                report = decode(read_frame(c.fro, 2**20, time.monotonic() + max(min(timeout, left), 0)))
                if report == 'done':
                    return c
                i, status, ename, evalue = report
                assert i == order[at]
            except TimeoutError:
                c.stop()
                if left <= timeout:
                    for i in order[at:]:
                        if cells_done[i] is None:
                            cells_done[i] = ('timeout', 'NotebookTimeout', str(job['notebook_timeout']))
                    return None
                status, ename, evalue = 'timeout', 'CellTimeout', str(timeout)
            except Exception:  # it died, or sent what no honest C sends
                how = c.stop()
                if at >= len(order):
                    return None
                status, ename, evalue = 'crashed', 'Died', how
            i = order[at]
            if cells_done[i] is None:
                cells_done[i] = (status, ename, evalue)
            if status in ('timeout', 'crashed'):
                skip.add(i)
                break
            at += 1


def judge_notebook(shell, job, wire_in, wire_out):
    """One notebook: its cells, then its graded cells one at a time, as the worker asks."""
    cells_done, skip = [None] * len(job['cells']), set()
    c = run_cells(shell, job, cells_done, skip)
    gave_up = c is None  # the notebook ran out of time: no second try
    send(wire_out, encode({'cells': cells_done}))
    while True:
        ask = decode(read_frame(wire_in))
        if ask == 'end':
            break
        gid = ask['gid']
        if c is None and not gave_up:  # replaced: the cells again, quietly, those that broke it left out
            c = run_cells(shell, job, [None] * len(job['cells']), skip)
            gave_up = c is None
        if c is None:
            send(wire_out, encode({'gid': gid, 'failed': 'timeout', 'why': 'the notebook ran out of time'}))
            continue
        send(c.to, encode(ask))
        del ask
        try:
            reply = read_frame(c.fro, MAX_FRAME, time.monotonic() + job['timeout'])
        except Exception as e:  # it ran too long, died, or sent a frame over the cap
            how, c = c.stop(), None
            late = isinstance(e, TimeoutError)
            send(wire_out, encode({'gid': gid, 'failed': 'timeout' if late else 'crashed',
                                   'why': str(job['timeout']) if late else how}))
            continue
        send(wire_out, struct.pack('<Q', len(reply)) + reply)
    if c is not None:
        c.stop()


def serve(shell, wire_in, wire_out):
    """One channel to the worker: its notebooks, one after another."""
    send(wire_out, encode('ready'))
    while True:
        try:
            job = decode(read_frame(wire_in))
        except EOFError:  # the worker is done with this student
            return
        judge_notebook(shell, job, wire_in, wire_out)


def main():
    """P: the imports, then one forked server per channel (the worker gives one per notebook, as
    pairs of descriptors 'IN,OUT' in argv; without them, stdin and stdout), so that a student's
    notebooks run at once."""
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
    except Exception as e:  # the worker reads this as the judge's last word
        for _, wire_out in channels:
            send(wire_out, encode({'judge_error': f'{type(e).__name__}: {e}'[:MAX_TEXT]}))
        sys.exit(2)
    servers = []
    for wire_in, wire_out in channels:
        pid = os.fork()
        if pid == 0:
            for fd in {fd for pair in channels for fd in pair} - {wire_in, wire_out}:
                os.close(fd)
            try:
                serve(shell, wire_in, wire_out)
            except Exception as e:
                try:
                    send(wire_out, encode({'judge_error': f'{type(e).__name__}: {e}'[:MAX_TEXT]}))
                except OSError:
                    pass
            os._exit(0)
        servers.append(pid)
    for fd in {fd for pair in channels for fd in pair}:
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
    import torch
    pid, cells, graded, memory_mb = os.getpid(), job['cells'], job['graded'], job['memory_mb']
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
    counter, write, save, load, BytesIO, pack, read = (torch._C._autograd._get_sequence_nr, os.write, torch.save,
                                                      torch.load, io.BytesIO, struct.pack, read_frame)
    runs = {gid: checks.spec(gid).run for gid, _ in graded}

    def reply(message):
        buffer = BytesIO()
        save(message, buffer)
        data = pack('<Q', buffer.tell()) + buffer.getvalue()
        view = memoryview(data)
        while view:
            view = view[write(wire_out, view):]

    no_more_processes(pid)
    sys.stdout = sys.stderr = Sink()
    for i, (_, source) in enumerate(cells):
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
        reply(report)
    sys.stdout = sys.stderr = Sink()
    reply('done')
    while True:
        try:
            data = read(wire_in)
        except EOFError:
            return
        start = counter()
        outputs, nodes, ask = [], [], {'gid': None}
        try:
            ask = load(BytesIO(data), weights_only=True)
            answer = shell.user_ns.get(dict(graded)[ask['gid']], MISSING)
            if answer is MISSING:
                reply({'gid': ask['gid'], 'missing': True, 'autograd_nodes': [counter() - start]})
                continue
            for case in ask['cases']:
                outputs.append(runs[ask['gid']](answer, case))
                nodes.append(counter() - start)
                start = counter()
        except BaseException as e:  # spec.run never raises; only the process's own trouble gets here
            outputs = nodes = None
            reply({'gid': ask['gid'], 'failed': 'crashed', 'why': type(e).__name__})
            continue
        if nodes:
            nodes[-1] += counter() - start
        reply({'gid': ask['gid'], 'outputs': outputs, 'autograd_nodes': nodes})
        sys.stdout = sys.stderr = Sink()


if __name__ == '__main__':
    main()
