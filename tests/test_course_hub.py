"""deploy/jupyterhub_config.py, started for real on 127.0.0.1 (JupyterHub from PyPI, its
proxy from npm) with a test password in place of the machine's (PAM) logins, on a deployment
made as the README's "A large course" says: the instructor's account holds the whole kit
(mode 700) and the course folder (mode 700, its nbgrader_config.py mode 600 with the
gradebook's password); students' servers run on a student Python where root installed the
student share (`make student-kit`); every home is mode 700. A student logs in and their
server runs as their Unix account, on their copy of the released assignment, within the
course's limits, and from that server they read no solution, no other student's work, not
the course folder, not the gradebook. The instructor reaches the formgrader, which reads the
course's PostgreSQL gradebook.

Copies of the kit that the deployment did not put there (this test's own clone, wherever CI
made it, which the instructor's kit links its .venv to; other clones and leftovers of other
runs on the machine) are left as they are: before it makes the deployment, the test
searches, as the student, every file the machine already lets every account read, and
after, from the student's server, it finds an answer line in no file that was not already
readable before, and in none of the deployment's places."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import websocket

from tests.course import ENV, NB, run
from tests.kit import ASSIGNMENT, BIN, ROOT, new_venv
from tests.test_student_kit import GIVEN, answer_lines

PROXY = 'configurable-http-proxy@5.3.0'
PASSWORD = uuid.uuid4().hex
TAG = uuid.uuid4().hex[:4]
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an http_proxy


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def call(url, token=None, method='GET', body=None):
    """(status, parsed JSON or text) of one request."""
    headers = {'Authorization': f'token {token}'} if token else {}
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with DIRECT.open(req, timeout=60) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode(errors='replace')
    except urllib.error.URLError as e:  # not listening (yet)
        return None, str(e)
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def wait_for(what, check, seconds=180):
    for _ in range(int(seconds / 0.5)):
        got = check()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f'{what} did not happen within {seconds} s')


# the system's own folders (and links into them), and the sandbox's own folders on the
# machines this kit is tested on: not searched
SYSTEM = {'usr', 'lib', 'lib32', 'lib64', 'libx32', 'bin', 'sbin', 'etc', 'proc', 'sys', 'boot', 'farm', 'old_root'}
SEARCH = f"""
import os, subprocess
roots = [os.path.join('/', d) for d in sorted(os.listdir('/')) if d not in {sorted(SYSTEM)!r}]
found = subprocess.run(['grep', '-rlIF', '-D', 'skip', '-s', '-f', '-', *roots], input=NEEDLES,
                       capture_output=True, text=True).stdout
"""


# answer lines the machine-wide search leaves out, besides those the release itself shows
# (tests/test_student_kit.py's GIVEN), and why; the student share's own test still looks for them
COMMON = {'row_sum = 0.0': "torch's own code has this line (torch/_inductor/codegen/), in every student Python"}


def search_answers():
    """Python that sets `found`: every text file (grep -I) the account can read outside the
    system's folders that holds a line of an answer cell."""
    return f'NEEDLES = {chr(10).join(sorted(answer_lines() - set(GIVEN) - set(COMMON)))!r}\n' + SEARCH


def copy_kit(to):
    """The kit's files as this clone has them (its tracked files, edits included), no .venv."""
    listed = subprocess.run(['git', 'ls-files', '-z'], cwd=ROOT, capture_output=True, check=True).stdout
    for name in listed.decode().split('\0'):
        if name and (ROOT / name).is_file():
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, to / name)


@pytest.fixture(scope='module')
def hub(postgres, accounts, traversable_root):
    base = Path(tempfile.mkdtemp(prefix='bpn-hub-'))
    base.chmod(0o755)
    group = f'bpn{TAG}class'
    teacher = accounts(f'bpn{TAG}teach')
    student = accounts(f'bpn{TAG}ann', group=group)
    other = accounts(f'bpn{TAG}bo', group=group)
    for name in (teacher, student, other):
        Path(f'/home/{name}').chmod(0o700)
    probe = base / 'search.py'
    probe.write_text(search_answers() + 'print(found, end="")\n')
    probe.chmod(0o644)
    # what the machine lets every account read already, searched while the deployment is made
    # (whatever the deployment puts anywhere is searched again by place, after)
    searching = start(sys.executable, '-I', probe, user=student, cwd='/')
    npm = start('npm', 'install', '--silent', '--no-audit', '--no-fund', '--prefix', base / 'npm', PROXY, cwd=base)
    exchange, etc = base / 'exchange', base / 'etc'
    exchange.mkdir()
    exchange.chmod(0o1777)
    etc.mkdir()
    shutil.copy(ROOT / 'deploy' / 'nbgrader_config.py', etc)
    # the instructor's whole kit, mode 700; its Python is this clone's (a stand-in: a new one takes minutes)
    kit = Path(f'/home/{teacher}/backprop-ninja')
    kit.mkdir(mode=0o700)
    copy_kit(kit)
    (kit / '.venv').symlink_to(BIN.parent)
    run('chown', '-R', f'{teacher}:{teacher}', kit)
    env = dict(ENV, PATH=f'{kit / ".venv" / "bin"}:{ENV["PATH"]}', JUPYTER_CONFIG_PATH=str(etc), BPN_EXCHANGE=str(exchange))
    run(kit / '.venv' / 'bin' / 'python', 'tools/student_kit.py', '--out', 'build', user=teacher, cwd=kit, env=env)
    # the student Python: root installs the student share
    student_env = base / 'student-python'
    new_venv(student_env)
    wheel = next((kit / 'build').glob('backprop_ninja_student-*.whl'))
    run(student_env / 'bin' / 'python', '-m', 'pip', 'install', '-q', '--no-compile', '--disable-pip-version-check',
        f'{wheel}[hub]', timeout=1800)
    # the instructor's course folder, mode 700, its gradebook on PostgreSQL behind a password
    db_url = postgres.database()
    course = Path(f'/home/{teacher}/course')
    run('mkdir', '-m', '700', course, user=teacher, env=env)
    run('cp', '-r', kit / 'nbgrader_config.py', kit / 'solutions', course, user=teacher, env=env)
    run('bash', '-c', f'chmod 600 nbgrader_config.py && echo "c.CourseDirectory.db_url = \'{db_url}\'" >> nbgrader_config.py',
        user=teacher, cwd=course, env=env)
    for step in (['generate_assignment', ASSIGNMENT], ['release_assignment', ASSIGNMENT],
                 ['db', 'student', 'add', student], ['db', 'student', 'add', other]):
        run('nbgrader', *step, '--log-level=WARN', user=teacher, cwd=course, env=env)
    # the other student's own work
    run(student_env / 'bin' / 'nbgrader', 'fetch_assignment', ASSIGNMENT, user=other, cwd=f'/home/{other}',
        env=dict(env, PATH=f'{student_env / "bin"}:{ENV["PATH"]}'))
    # the proxy, from the npm registry
    said = npm.communicate(timeout=900)[1]
    assert npm.returncode == 0, said
    before = set(searching.communicate(timeout=900)[0].splitlines()) - {str(probe)}
    probe.unlink()
    ports = dict(hub=free_port(), api=free_port(), proxy=free_port(), formgrader=free_port())
    (base / 'hub').mkdir()
    (base / 'hub' / 'jupyterhub_config.py').write_text(f'''
c = get_config()
load_subconfig({str(kit / "deploy" / "jupyterhub_config.py")!r})
c.JupyterHub.authenticator_class = 'shared-password'  # in place of PAM: a test password
c.SharedPasswordAuthenticator.user_password = {PASSWORD!r}
c.JupyterHub.hub_bind_url = 'http://127.0.0.1:{ports["api"]}'
c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{ports["proxy"]}'
c.ConfigurableHTTPProxy.command = [{str(base / "npm" / "node_modules" / ".bin" / "configurable-http-proxy")!r}]
''')
    hub_env = dict(env, BPN_KIT=str(kit), BPN_STUDENT_ENV=str(student_env), BPN_JUPYTER_CONFIG=str(etc),
                   BPN_INSTRUCTOR=teacher, BPN_COURSE_DIR=str(course), BPN_STUDENT_GROUP=group,
                   BPN_HUB_URL=f'http://127.0.0.1:{ports["hub"]}', BPN_FORMGRADER_URL=f'http://127.0.0.1:{ports["formgrader"]}',
                   BPN_MEMORY_MB='3072', BPN_PROCESSES='200')
    log = (base / 'hub.log').open('w')
    proc = subprocess.Popen([str(kit / '.venv' / 'bin' / 'jupyterhub'), '-f', 'jupyterhub_config.py'], cwd=base / 'hub',
                            env=hub_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f'http://127.0.0.1:{ports["hub"]}'
    try:
        wait_for('the hub answering', lambda: proc.poll() is not None or call(f'{url}/hub/api')[0] == 200)
        assert proc.poll() is None, (base / 'hub.log').read_text()[-3000:]
        yield dict(url=url, teacher=teacher, student=student, other=other, base=base, course=course, kit=kit,
                   student_env=student_env, before=before, postgres=postgres, proc=proc)
    finally:
        print((base / 'hub.log').read_text()[-6000:])  # shown when a test failed
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)  # then killed: its servers run as the test's accounts, whose processes all end
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        for pid in started_from(base):  # a proxy left behind by a hub that failed to start
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)


def start(*cmd, user=None, cwd=None):
    """A command started as root or as Unix `user` (as course.run runs it), its output and errors on pipes."""
    env = dict(ENV)
    if user:
        env.update(HOME=f'/home/{user}', USER=user, LOGNAME=user)
        cmd = ('runuser', '-u', user, '--', *cmd)
    return subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def started_from(folder):
    """Ids of the processes whose command line names `folder` (this test's own folder)."""
    found = []
    for proc in Path('/proc').glob('[0-9]*'):
        try:
            if str(folder).encode() in (proc / 'cmdline').read_bytes():
                found.append(int(proc.name))
        except OSError:
            pass
    return found


def login(hub, name):
    """A token for `name`, from the hub's REST API given their password."""
    status, got = call(f'{hub["url"]}/hub/api/users/{name}/tokens', method='POST',
                       body=dict(auth=dict(username=name, password=PASSWORD)))
    assert status == 201, (status, got)
    return got['token']


@pytest.fixture(scope='module')
def student_server(hub):
    token = login(hub, hub['student'])
    user = f'{hub["url"]}/hub/api/users/{hub["student"]}'
    status, got = call(f'{user}/server', token, method='POST', body={})
    assert status in (201, 202), (status, got)

    def started():
        status, got = call(user, token)
        if status != 200:  # the hub busy: ask again
            return None
        servers = got.get('servers', {})
        assert '' in servers, 'the hub gave up starting the server:\n' + (hub['base'] / 'hub.log').read_text()[-3000:]
        return servers['']['ready']
    wait_for('the student server', started, seconds=600)
    return dict(token=token, url=f'{hub["url"]}/user/{hub["student"]}')


def in_kernel(server, code):
    """What `code` prints, run in a kernel of the student's server (as the student, on the
    student Python), through the server's REST and websocket API."""
    status, kernel = call(f'{server["url"]}/api/kernels', server['token'], method='POST', body={})
    assert status == 201, kernel
    ws = websocket.create_connection(f'{server["url"].replace("http", "ws", 1)}/api/kernels/{kernel["id"]}/channels',
                                     header=[f'Authorization: token {server["token"]}'], timeout=600)
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps(dict(channel='shell', parent_header={}, metadata={}, buffers=[],
                            header=dict(msg_id=msg_id, msg_type='execute_request', username='', session=uuid.uuid4().hex,
                                        version='5.3'),
                            content=dict(code=code, silent=False, store_history=False, user_expressions={},
                                         allow_stdin=False, stop_on_error=True))))
    printed, error, replied, idle = [], None, False, False
    while not (replied and idle):  # the output (iopub) may come after the reply (shell)
        msg = json.loads(ws.recv())
        if msg.get('parent_header', {}).get('msg_id') != msg_id:
            continue
        kind = msg['header']['msg_type']
        if kind == 'stream':
            printed.append(msg['content']['text'])
        if kind == 'error':
            error = msg['content']
        replied = replied or kind == 'execute_reply'
        idle = idle or (kind == 'status' and msg['content']['execution_state'] == 'idle')
    ws.close()
    call(f'{server["url"]}/api/kernels/{kernel["id"]}', server['token'], method='DELETE')
    assert error is None, error
    return ''.join(printed)


def test_a_wrong_password_gets_no_token(hub):
    status, _ = call(f'{hub["url"]}/hub/api/users/{hub["student"]}/tokens', method='POST',
                     body=dict(auth=dict(username=hub['student'], password='not-' + PASSWORD)))
    assert status == 403


def test_a_students_server_runs_as_their_unix_account(hub, student_server):
    status, _ = call(f'{student_server["url"]}/api/contents/mine.txt', student_server['token'], method='PUT',
                     body=dict(type='file', format='text', content='my own file'))
    assert status == 201
    made = Path(f'/home/{hub["student"]}/mine.txt')
    assert made.read_text() == 'my own file' and made.owner() == hub['student']


def test_a_students_server_opens_on_their_copy_of_the_released_assignment(hub, student_server):
    status, folder = call(f'{student_server["url"]}/api/contents/{ASSIGNMENT}', student_server['token'])
    assert status == 200, folder
    assert sorted(f['name'] for f in folder['content'] if f['name'].endswith('.ipynb')) == \
        sorted(p.name for p in (ROOT / 'notebooks' / ASSIGNMENT).glob('*.ipynb'))
    assert (Path(f'/home/{hub["student"]}') / ASSIGNMENT / f'{NB}.ipynb').owner() == hub['student']
    status, listed = call(f'{student_server["url"]}/assignments?course_id=backprop_ninja', student_server['token'])
    assert status == 200 and listed['success'], listed
    assert [(a['assignment_id'], a['status']) for a in listed['value']] == [(ASSIGNMENT, 'fetched')]


def test_a_students_server_runs_within_the_courses_limits(hub, student_server):
    uid = Path(f'/home/{hub["student"]}').stat().st_uid
    servers = [p for p in Path('/proc').glob('[0-9]*') if p.stat().st_uid == uid and
               b'jupyterhub-singleuser' in (p / 'cmdline').read_bytes()]
    assert servers, 'no server process of the student'
    limits = (servers[0] / 'limits').read_text()
    assert any(line.startswith('Max data size') and f'{3 * 2**30}' in line for line in limits.splitlines()), limits
    assert any(line.startswith('Max processes') and ' 200 ' in line for line in limits.splitlines()), limits


def test_students_have_no_formgrader(hub, student_server):
    status, _ = call(f'{student_server["url"]}/formgrader/api/assignments', student_server['token'])
    assert status == 404
    status, _ = call(f'{hub["url"]}/services/formgrader/formgrader/api/assignments', student_server['token'])
    assert status in (403, 302)


def test_the_instructor_reaches_the_formgrader_on_the_postgresql_gradebook(hub):
    token = login(hub, hub['teacher'])
    base = f'{hub["url"]}/services/formgrader/formgrader'
    status, page = wait_for('the formgrader', lambda: (lambda r: r if r[0] == 200 else None)(call(base, token)))
    assert 'formgrader' in page.lower()
    status, assignments = call(f'{base}/api/assignments', token)
    assert status == 200
    assert [a['name'] for a in assignments] == [ASSIGNMENT]
    status, students = call(f'{base}/api/students', token)
    assert status == 200 and sorted(s['id'] for s in students) == sorted([hub['student'], hub['other']])


def test_a_students_kernel_runs_on_the_student_share_not_the_kit(hub, student_server):
    where = in_kernel(student_server, 'import sys, helpers, checks; print(sys.prefix, helpers.__file__, checks.__file__)')
    assert where.split()[0] == str(hub['student_env']) and str(hub['kit']) not in where and str(ROOT) not in where


def test_a_student_reads_no_solution_no_classmates_work_no_course_and_no_gradebook_by_path(hub, student_server):
    kit, course, other = hub['kit'], hub['course'], Path(f'/home/{hub["other"]}')
    paths = [kit / 'solutions' / ASSIGNMENT / f'{NB}.ipynb', kit / 'nbsrc' / f'{NB}.py', kit / 'README.md',
             course / 'nbgrader_config.py', course / 'solutions' / ASSIGNMENT / f'{NB}.ipynb',
             course / 'notebooks' / ASSIGNMENT / f'{NB}.ipynb',
             other / ASSIGNMENT / f'{NB}.ipynb', hub['postgres'].data / 'PG_VERSION', hub['postgres'].data / 'pg_hba.conf']
    folders = [kit, course, other, hub['postgres'].data]
    assert [p for p in paths if not p.exists()] == []  # as root: each is there to be refused
    code = f"""
import json, os
got = {{}}
for path in {[str(p) for p in paths]!r}:
    try:
        open(path, 'rb').close()
        got[path] = 'read'
    except OSError as e:
        got[path] = type(e).__name__
for path in {[str(p) for p in folders]!r}:
    try:
        os.listdir(path)
        got[path] = 'listed'
    except OSError as e:
        got[path] = type(e).__name__
print(json.dumps(got))
"""
    got = json.loads(in_kernel(student_server, code))
    assert set(got.values()) == {'PermissionError'}, got


def test_no_file_a_student_can_read_holds_an_answer_the_deployment_put_there(hub, student_server):
    canary = sorted(answer_lines() - set(GIVEN) - set(COMMON))[0]  # the search must find this one
    status, _ = call(f'{student_server["url"]}/api/contents/canary.txt', student_server['token'], method='PUT',
                     body=dict(type='file', format='text', content=f'copied from a classmate:\n    {canary}\n'))
    assert status in (200, 201)
    found = set(in_kernel(student_server, search_answers() + 'print(found, end="")').splitlines())
    assert f'/home/{hub["student"]}/canary.txt' in found, 'the search did not find a planted answer line'
    found.discard(f'/home/{hub["student"]}/canary.txt')
    places = [hub['kit'], hub['course'], hub['base'], Path(f'/home/{hub["student"]}'), Path(f'/home/{hub["other"]}'),
              hub['postgres'].folder]
    assert not [f for f in found if any(Path(f).is_relative_to(p) for p in places)]
    assert found <= hub['before'], sorted(found - hub['before'])
