"""The sandbox each student's grading runs in (grading/sandbox.py), and how the grader reads
back what the sandbox wrote (grading/worker.read_box_file)."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grading import sandbox
from grading.worker import read_box_file

pytestmark = pytest.mark.skipif(sandbox.missing() is not None, reason=f'no bubblewrap: {sandbox.missing()}')


def boxed(tmp_path, script, hidden=(), timeout=60, cgroup=None):
    """Run python `script` in a sandbox whose only writable folder is tmp_path/student/box."""
    box = tmp_path / 'student' / 'box'
    box.mkdir(parents=True, exist_ok=True)
    (box / 'script.py').write_text(script)
    with open(tmp_path / 'log', 'wb') as log:
        code, _ = sandbox.run([sys.executable, str(box / 'script.py')], box, [str(h) for h in hidden],
                              dict(os.environ), timeout, cgroup, log=log)
    return code, (tmp_path / 'log').read_text()


def test_inside_only_the_students_folder_and_a_private_tmp_can_be_written(tmp_path):
    kit_file = Path(sandbox.__file__)
    outside = kit_file.parent.parent / f'outside-{os.getpid()}.txt'
    code, log = boxed(tmp_path, f'''
import os, pathlib
pathlib.Path('mine.txt').write_text('ok')
open('/tmp/scratch', 'w').write('ok')
for target in [{str(kit_file)!r}, {str(outside)!r}, '/etc/passwd']:
    try:
        open(target, 'a').write('x')
        print('WROTE', target)
    except OSError as e:
        print('refused', e.strerror)
''')
    assert code == 0, log
    assert 'WROTE' not in log and log.count('Read-only file system') == 3
    assert (tmp_path / 'student' / 'box' / 'mine.txt').read_text() == 'ok'
    assert not outside.exists()
    assert not Path('/tmp/scratch').exists()


def test_hidden_folders_look_empty_inside_and_the_network_is_loopback_only(tmp_path):
    secret = tmp_path / 'submissions' / 'bob'
    secret.mkdir(parents=True)
    (secret / 'answers.ipynb').write_text('{}')
    code, log = boxed(tmp_path, f'''
import os, socket
print('listing', os.listdir({str(tmp_path / 'submissions')!r}))
print('interfaces', sorted(name for _, name in socket.if_nameindex()))
try:
    socket.create_connection(('1.1.1.1', 80), timeout=3)
    print('CONNECTED')
except OSError as e:
    print('no route', e)
''', hidden=[tmp_path / 'submissions'])
    assert code == 0, log
    assert "listing []" in log and "interfaces ['lo']" in log and 'CONNECTED' not in log


def test_it_sees_no_process_of_the_grader_and_has_no_capabilities(tmp_path):
    code, log = boxed(tmp_path, '''
import os
pids = [p for p in os.listdir('/proc') if p.isdigit()]
print('processes', len(pids))
print(open('/proc/self/status').read())
try:
    os.kill(1, 9)
except OSError as e:
    print('kill', e)
''')
    assert code == 0, log
    processes = int(log.split('processes ')[1].split()[0])
    assert processes <= 3  # bwrap's init, python, maybe the shell
    assert 'CapEff:\t0000000000000000' in log


def test_nothing_started_inside_outlives_the_sandbox(tmp_path):
    marker = f'bpn-outlive-{os.getpid()}'
    code, log = boxed(tmp_path, f'''
import subprocess, sys
subprocess.Popen([sys.executable, '-c', 'import time, sys; time.sleep(600)', {marker!r}],
                 start_new_session=True)
print('started')
''')
    assert code == 0 and 'started' in log, log
    time.sleep(0.5)
    left = subprocess.run(['pgrep', '-f', marker], capture_output=True, text=True).stdout.split()
    assert left == []


@pytest.mark.skipif(sandbox.parent_cgroup()[0] is None, reason='no writable pids cgroup')
def test_a_fork_bomb_is_capped_and_stopped_with_the_sandbox(tmp_path):
    parent, _ = sandbox.parent_cgroup()
    try:
        code, log = boxed(tmp_path, '''
import os, time
made = 0
try:
    for _ in range(5000):
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
        made += 1
except OSError as e:
    print('refused after', made, e.strerror)
''', cgroup=parent, timeout=120)
        made = int(log.split('refused after ')[1].split()[0])
        assert made < sandbox.PIDS_MAX
        assert not any(p.is_dir() for p in Path(parent).iterdir())  # its cgroup is gone: nothing left in it
    finally:
        sandbox.remove_cgroups(parent)
    assert not Path(parent).exists()


def test_the_grader_reads_back_only_regular_files_of_bounded_size(tmp_path):
    box = tmp_path / 'box'
    (box / 'handin').mkdir(parents=True)
    (box / 'handin' / 'ok.pt').write_bytes(b'1234')
    (box / 'handin' / 'big.pt').write_bytes(b'x' * 100)
    (box / 'handin' / 'link.pt').symlink_to('/etc/passwd')
    (box / 'linked').symlink_to(box / 'handin')
    os.mkfifo(box / 'handin' / 'fifo.pt')
    assert read_box_file(box, 'handin/ok.pt', 50) == (b'1234', None)
    assert read_box_file(box, 'handin/big.pt', 50)[0] is None
    assert read_box_file(box, 'handin/link.pt', 50) == (None, 'a symbolic link')
    assert read_box_file(box, 'linked/ok.pt', 50) == (None, 'a symbolic link')
    assert read_box_file(box, 'handin/fifo.pt', 50) == (None, 'not a regular file')
    assert read_box_file(box, 'handin/none.pt', 50) == (None, 'missing')


def test_make_grade_without_bubblewrap_says_what_to_install_and_refuses(tmp_path):
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))  # no /usr/bin: no bwrap
    run = subprocess.run([sys.executable, '-m', 'grading', str(tmp_path), '--out', str(tmp_path / 'out')],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert 'apt-get install bubblewrap' in run.stderr and '--no-sandbox' in run.stderr
    assert not (tmp_path / 'out').exists()
