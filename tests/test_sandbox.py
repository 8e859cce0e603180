"""Each wall of the sandbox a student's judge runs in (grading/sandbox.py), tried on its own
by code that attacks it, and the seccomp filter of the judge's child (grading/judge.py)."""
import os
import select
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grading import sandbox
from grading.judge import decode, encode, read_frame, send

pytestmark = pytest.mark.skipif(sandbox.missing() is not None, reason=f'no bubblewrap: {sandbox.missing()}')
KIT = sandbox.KIT


@pytest.fixture(scope='module')
def cgroups():
    parents, warnings = sandbox.parent_cgroups()
    yield parents
    sandbox.remove_cgroups(parents)


def output_of(box, seconds=120, cap=2**20):
    """What the sandbox printed, up to `cap` bytes, until it ends or `seconds` pass."""
    got, deadline = b'', time.monotonic() + seconds
    while len(got) < cap and select.select([box.stdout], [], [], max(deadline - time.monotonic(), 0))[0]:
        chunk = os.read(box.stdout, 65536)
        if not chunk:
            break
        got += chunk
    return got.decode(errors='replace')


def boxed(cgroups, script, memory_mb=512, binds=(), name='wall'):
    """Python `script` run behind the walls: (what it printed, whether its memory cgroup
    stopped something)."""
    box = sandbox.Box([sys.executable, '-c', script], cgroups, f'{name}-{os.getpid()}', memory_mb, binds=binds)
    try:
        text = output_of(box)
        return text, ran_out_of_memory(box.cgroups)
    finally:
        box.stop()


def ran_out_of_memory(cgroups):
    try:
        return int((cgroups['memory'] / 'memory.oom_control').read_text().split('oom_kill ')[1].split()[0]) > 0
    except (KeyError, OSError, IndexError, ValueError):
        return False


def test_the_kits_solutions_sources_and_the_grading_folders_are_not_there(cgroups):
    text, _ = boxed(cgroups, f'''
import os
for path in [{str(KIT / 'solutions' / 'backprop_ninja' / '01_atomic_backprop.ipynb')!r},
             {str(KIT / 'nbsrc' / '01_atomic_backprop.py')!r}, {str(KIT / 'grading' / 'worker.py')!r},
             '/home', '/srv', '/var', {str(Path.cwd() / 'grades')!r}, '/etc/passwd']:
    try:
        open(path).read() if os.path.isfile(path) else os.listdir(path)
        print('READ', path)
    except OSError as e:
        print('refused', type(e).__name__)
print('root', os.listdir('/root') if os.path.isdir('/root') else [])
print('kit', sorted(os.listdir({str(KIT)!r})))
''')
    assert 'READ' not in text and text.count('refused FileNotFoundError') == 8, text
    python = [p.parts[2] for p in map(Path, sandbox.kit_binds()) if p.is_relative_to('/root')]
    assert f"root {sorted(set(python))}" in text  # /root holds at most the way to the kit's Python
    listed = eval(text.split('kit ')[1].splitlines()[0])
    assert set(listed) - {'.venv'} in ({'checks', 'data', 'grading', 'helpers.py'}, {'checks', 'data', 'grading', 'helpers'})


def test_it_runs_as_nobody_without_capabilities_and_cannot_read_a_root_only_file(cgroups, tmp_path):
    secret = tmp_path / 'secret.txt'
    secret.write_text('the answers')
    secret.chmod(0o600)
    assert secret.stat().st_uid == 0 and stat.S_IMODE(secret.stat().st_mode) == 0o600
    text, _ = boxed(cgroups, f'''
import os
print('uid', os.getuid(), os.getgid(), os.getgroups())
print([line for line in open('/proc/self/status') if line.startswith('CapEff')])
try:
    print('READ', open({str(secret)!r}).read())
except OSError as e:
    print('refused', e.strerror)
''', binds=[secret])
    assert 'uid 65534 65534 []' in text and 'CapEff:\\t0000000000000000' in text, text
    assert 'READ' not in text and 'refused Permission denied' in text


def test_only_its_ram_folders_can_be_written(cgroups):
    text, _ = boxed(cgroups, f'''
import os
for folder in ['.', '/tmp', '/dev/shm']:
    open(os.path.join(folder, 'mine.txt'), 'w').write('ok')
    print('wrote', folder)
for target in [{str(KIT / 'helpers.py')!r}, {str(KIT / 'checks' / 'new.py')!r}, '/usr/new', '/new', '/etc/passwd']:
    try:
        open(target, 'a').write('x')
        print('WROTE', target)
    except OSError as e:
        print('refused', e.strerror)
print('cwd', os.getcwd())
''')
    assert text.count('wrote') == 3 and 'WROTE' not in text and text.count('refused') == 5, text
    assert 'cwd /scratch' in text


def test_the_environment_holds_nothing_of_the_graders(cgroups, monkeypatch, tmp_path):
    monkeypatch.setenv('MAKEFLAGS', f'-- SUBMISSIONS={tmp_path}/class OUT={tmp_path}/grades')
    monkeypatch.setenv('BPN_SECRET', str(tmp_path))
    text, _ = boxed(cgroups, 'import os\nfor k, v in sorted(os.environ.items()): print(k, v)')
    names = {line.split()[0] for line in text.splitlines() if line.strip()}
    assert names - {'PWD'} == set(sandbox.ENVIRONMENT), text  # PWD: bwrap's --chdir
    assert str(tmp_path) not in text and 'MAKEFLAGS' not in text


def test_ram_folders_over_the_memory_limit_stop_the_sandbox(cgroups):
    """/tmp, /dev/shm and the scratch folder together can hold more than the limit: the
    memory cgroup counts them, and stops what fills them."""
    total = sum(sandbox.SIZES_MB.values())
    limit = total - 60
    text, stopped = boxed(cgroups, '''
import sys
block = b'x' * 2**20
written = 0
for folder, mb in [('/tmp', 60), ('/dev/shm', 14), ('.', 250)]:
    with open(folder + '/fill', 'wb') as f:
        for _ in range(mb):
            f.write(block)
            f.flush()
            written += 1
            print(written, flush=True)
print('DONE')
''', memory_mb=limit)
    assert 'DONE' not in text, text[-200:]
    assert stopped
    assert int(text.split()[-1]) < limit


def test_the_scratch_folder_has_a_size(cgroups):
    text, _ = boxed(cgroups, f'''
written = 0
try:
    with open('fill', 'wb') as f:
        for _ in range({sandbox.SIZES_MB[sandbox.SCRATCH] + 50}):
            f.write(b'x' * 2**20)
            f.flush()
            written += 1
except OSError as e:
    print('stopped at', written, 'MB:', e.strerror)
''', memory_mb=2048)
    assert f'stopped at {sandbox.SIZES_MB[sandbox.SCRATCH] - 1} MB' in text or \
        f'stopped at {sandbox.SIZES_MB[sandbox.SCRATCH]} MB' in text, text
    assert 'No space left on device' in text


def test_a_unix_socket_outside_its_binds_and_the_network_are_out_of_reach(cgroups, tmp_path):
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / 'gradebook.sock'))
    server.listen()
    hidden = socket.socket(socket.AF_UNIX)
    hidden.bind(f'\0bpn-test-{os.getpid()}')  # an abstract socket: no file at all
    hidden.listen()
    try:
        text, _ = boxed(cgroups, f'''
import socket
for address in [{str(tmp_path / 'gradebook.sock')!r}, '\\0bpn-test-{os.getpid()}']:
    try:
        socket.socket(socket.AF_UNIX).connect(address)
        print('CONNECTED', address)
    except OSError as e:
        print('unreachable', type(e).__name__)
print('interfaces', sorted(name for _, name in socket.if_nameindex()))
try:
    socket.create_connection(('1.1.1.1', 80), timeout=3)
    print('CONNECTED out')
except OSError as e:
    print('unreachable', type(e).__name__)
''')
    finally:
        server.close()
        hidden.close()
    assert 'CONNECTED' not in text and text.count('unreachable') == 3, text
    assert "interfaces ['lo']" in text


def test_it_sees_no_process_and_no_descriptor_of_the_machine(cgroups):
    text, _ = boxed(cgroups, '''
import os
print('processes', len([p for p in os.listdir('/proc') if p.isdigit()]))
print('fds', sorted(int(fd) for fd in os.listdir('/proc/self/fd')))
''')
    assert int(text.split('processes ')[1].split()[0]) <= 3, text  # bwrap's init, setpriv's python, ls
    assert 'fds [0, 1, 2, 3]' in text  # 3: the listing itself


def test_nothing_started_inside_outlives_the_sandbox(cgroups):
    marker = f'bpn-outlive-{os.getpid()}'
    text, _ = boxed(cgroups, f'''
import subprocess, sys
subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', {marker!r}], start_new_session=True)
print('started', flush=True)
''')
    assert 'started' in text
    time.sleep(0.5)
    assert subprocess.run(['pgrep', '-f', marker], capture_output=True, text=True).stdout.split() == []


def test_a_fork_bomb_is_capped_by_the_pids_cgroup(cgroups):
    if 'pids' not in cgroups:
        pytest.skip('no writable pids cgroup')
    text, _ = boxed(cgroups, '''
import os, time
made = 0
try:
    for _ in range(5000):
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
        made += 1
except OSError as e:
    print('refused after', made, e.strerror, flush=True)
''')
    assert int(text.split('refused after ')[1].split()[0]) < sandbox.PIDS_MAX, text


def test_the_workers_read_of_what_comes_out_is_capped_and_timed(cgroups):
    box = sandbox.Box([sys.executable, '-c', '''
import os, struct, time
os.write(1, struct.pack('<Q', 10 * 2**30))   # "a frame of 10 GB follows"
time.sleep(600)
'''], cgroups, f'flood-{os.getpid()}', 512)
    try:
        with pytest.raises(ValueError, match='over the cap'):
            read_frame(box.stdout, 2**20, time.monotonic() + 60)
        with pytest.raises(TimeoutError):  # and one that says nothing more is given up on
            read_frame(box.stdout, 2**20, time.monotonic() + 1)
    finally:
        box.stop()


def test_the_judges_child_can_start_no_thread_process_or_program(cgroups):
    box = sandbox.Box([sys.executable, '-m', 'grading.judge'], cgroups, f'judge-{os.getpid()}', 1024)
    try:
        assert decode(read_frame(box.stdout, 2**20, time.monotonic() + 300)) == 'ready'
        cells = ['import threading\nthreading.Thread(target=print).start()',
                 'import os\nos.fork()',
                 "import os\nos.execv('/usr/bin/true', ['true'])",
                 "import subprocess\nsubprocess.run(['/usr/bin/true'])",
                 '!ls /',  # a shell
                 'import os\nos.kill(os.getppid(), 9)',  # a signal to P
                 'x = sum(range(10))']
        send(box.stdin, encode(dict(cells=cells, graded=[], timeout=60, notebook_timeout=120, memory_mb=1024)))
        ran = decode(read_frame(box.stdout, 2**20, time.monotonic() + 200))['cells']
    finally:
        box.stop()
    assert ran[0] == ('error', 'RuntimeError', "can't start new thread")
    assert [r[1] for r in ran[1:6]] == ['PermissionError'] * 5, ran
    assert ran[6][0] == 'ok'


def test_a_cell_that_asks_torch_for_more_threads_runs_on_the_one_it_has(cgroups):
    """An honest habit (notebook 4 trains faster so at home): in the judge, where no thread can
    start, it changes nothing, and the work after it runs as in the student's kernel."""
    box = sandbox.Box([sys.executable, '-m', 'grading.judge'], cgroups, f'threads-{os.getpid()}', 1024)
    try:
        assert decode(read_frame(box.stdout, 2**20, time.monotonic() + 300)) == 'ready'
        cells = ['torch.set_num_threads(8)\ntorch.set_num_interop_threads(8)',
                 'x = torch.randn(512, 512)\ny = (x @ x).tanh().sum()', 'assert torch.get_num_threads() == 1']
        send(box.stdin, encode(dict(cells=['import torch'] + cells, graded=[], timeout=60, notebook_timeout=120,
                                    memory_mb=1024)))
        ran = decode(read_frame(box.stdout, 2**20, time.monotonic() + 200))['cells']
    finally:
        box.stop()
    assert [r[0] for r in ran] == ['ok'] * 4, ran


def test_the_judge_counts_the_autograd_nodes_a_graded_call_makes_however_it_is_spelled(cgroups):
    import secrets
    import checks
    from tests.kit import solved
    nb = solved('01_atomic_backprop')
    cells = [c.source for c in nb.cells if c.cell_type == 'code' and not c.metadata.get('nbgrader', {}).get('grade')]
    cells.append('''
honest = backprop_layer2
def backprop_layer2(dlogits, h, W2):
    with getattr(torch, 'enable' + '_grad')():
        w = W2.clone().requires_grad_()
        (w * 2).sum().backward()
    return honest(dlogits, h, W2)
''')
    graded = [('test_stage1', 'backprop_cross_entropy'), ('test_stage2', 'backprop_layer2')]
    box = sandbox.Box([sys.executable, '-m', 'grading.judge'], cgroups, f'count-{os.getpid()}', 1024)
    try:
        assert decode(read_frame(box.stdout, 2**20, time.monotonic() + 300)) == 'ready'
        send(box.stdin, encode(dict(cells=cells, graded=graded, timeout=60, notebook_timeout=300, memory_mb=1024)))
        ran = decode(read_frame(box.stdout, 2**20, time.monotonic() + 300))['cells']
        assert all(r[0] == 'ok' for r in ran), ran
        nodes = {}
        for gid, _ in graded:
            send(box.stdin, encode(dict(gid=gid, cases=checks.spec(gid).cases(secrets.randbits(63)))))
            nodes[gid] = decode(read_frame(box.stdout, 2**26, time.monotonic() + 300))['autograd_nodes']
    finally:
        box.stop()
    assert nodes['test_stage1'] == [0, 0, 0, 0]
    assert len(nodes['test_stage2']) == 4 and all(k > 0 for k in nodes['test_stage2'])


def test_make_grade_without_bubblewrap_says_what_to_install_and_refuses(tmp_path):
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))  # no /usr/bin: no bwrap
    run = subprocess.run([sys.executable, '-m', 'grading', str(tmp_path), '--out', str(tmp_path / 'out')],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert 'apt-get install bubblewrap' in run.stderr and '--no-sandbox' in run.stderr
    assert not (tmp_path / 'out').exists()


def test_a_students_notebooks_run_at_once_and_each_child_holds_only_its_own_two_pipes(cgroups):
    waits = '''
import os, time
for _ in range(600):  # the other notebook's first cell makes /tmp/started; one after the other, this gives up
    if os.path.exists('/tmp/started'):
        break
    time.sleep(0.1)
links = []
for fd in os.listdir('/proc/self/fd'):
    try:
        links.append(os.readlink(f'/proc/self/fd/{fd}').split(':')[0])
    except OSError:
        pass  # the listing's own descriptor, closed by now
raise ValueError(' '.join(sorted(links)) + (' started' if os.path.exists('/tmp/started') else ' alone'))
'''
    import checks.training
    box = sandbox.Box([sys.executable, '-m', 'grading.judge'], cgroups, f'twice-{os.getpid()}', 1024, channels=2)
    try:
        send(box.stdin, encode(checks.training.splits(3)))  # the dataset, as the worker sends it
        for (to, fro), cells in zip(box.channels, [[waits], ["open('/tmp/started', 'w')"]]):
            assert decode(read_frame(fro, 2**20, time.monotonic() + 300)) == 'ready'
            send(to, encode(dict(cells=cells, graded=[], timeout=120, notebook_timeout=300, memory_mb=1024)))
        ran = [decode(read_frame(fro, 2**20, time.monotonic() + 300))['cells'] for _, fro in box.channels]
    finally:
        box.stop()
    assert ran[1] == [('ok', '', '')]
    assert ran[0] == [('error', 'ValueError', '/dev/null /dev/null /dev/null pipe pipe started')], ran
