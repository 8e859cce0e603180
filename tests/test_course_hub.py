"""deploy/jupyterhub_config.py, started for real on 127.0.0.1 (JupyterHub from PyPI, its
proxy from npm) with a test password in place of the machine's (PAM) logins: a student
logs in and their server runs as their Unix account, on their copy of the released
assignment, within the course's limits; the instructor reaches the formgrader, which reads
the course's PostgreSQL gradebook."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.course import ENV, NB, accounts, postgres, run, traversable_root  # noqa: F401
from tests.kit import ASSIGNMENT, BIN, ROOT

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


@pytest.fixture(scope='module')
def hub(postgres, accounts, traversable_root):  # noqa: F811
    base = Path(tempfile.mkdtemp(prefix='bpn-hub-'))
    base.chmod(0o755)
    exchange = base / 'exchange'
    exchange.mkdir()
    exchange.chmod(0o1777)
    group = f'bpn{TAG}class'
    teacher = accounts(f'bpn{TAG}teach')
    student = accounts(f'bpn{TAG}ann', group=group)
    db_url = postgres.database()
    env = dict(ENV, JUPYTER_CONFIG_PATH=str(ROOT / 'deploy'), BPN_EXCHANGE=str(exchange))
    # the instructor's course folder, its gradebook on PostgreSQL; the assignment released
    course = Path(f'/home/{teacher}/course')
    run('mkdir', course, user=teacher, env=env)
    run('cp', '-r', ROOT / 'nbgrader_config.py', ROOT / 'solutions', course, user=teacher, env=env)
    run('bash', '-c', f'echo "c.CourseDirectory.db_url = \'{db_url}\'" >> nbgrader_config.py', user=teacher, cwd=course, env=env)
    for step in (['generate_assignment', ASSIGNMENT], ['release_assignment', ASSIGNMENT], ['db', 'student', 'add', student]):
        run(BIN / 'nbgrader', *step, '--log-level=WARN', user=teacher, cwd=course, env=env)
    # the proxy, from the npm registry
    run('npm', 'install', '--silent', '--no-audit', '--no-fund', '--prefix', base / 'npm', PROXY, cwd=base)
    ports = dict(hub=free_port(), api=free_port(), proxy=free_port(), formgrader=free_port())
    (base / 'hub').mkdir()
    (base / 'hub' / 'jupyterhub_config.py').write_text(f'''
c = get_config()
load_subconfig({str(ROOT / "deploy" / "jupyterhub_config.py")!r})
c.JupyterHub.authenticator_class = 'shared-password'  # in place of PAM: a test password
c.SharedPasswordAuthenticator.user_password = {PASSWORD!r}
c.JupyterHub.hub_bind_url = 'http://127.0.0.1:{ports["api"]}'
c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{ports["proxy"]}'
c.ConfigurableHTTPProxy.command = [{str(base / "npm" / "node_modules" / ".bin" / "configurable-http-proxy")!r}]
''')
    hub_env = dict(env, BPN_KIT=str(ROOT), BPN_INSTRUCTOR=teacher, BPN_COURSE_DIR=str(course), BPN_STUDENT_GROUP=group,
                   BPN_HUB_URL=f'http://127.0.0.1:{ports["hub"]}', BPN_FORMGRADER_URL=f'http://127.0.0.1:{ports["formgrader"]}',
                   BPN_MEMORY_MB='3072', BPN_PROCESSES='200')
    log = (base / 'hub.log').open('w')
    proc = subprocess.Popen([str(BIN / 'jupyterhub'), '-f', 'jupyterhub_config.py'], cwd=base / 'hub', env=hub_env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f'http://127.0.0.1:{ports["hub"]}'
    try:
        wait_for('the hub answering', lambda: proc.poll() is not None or call(f'{url}/hub/api')[0] == 200)
        assert proc.poll() is None, (base / 'hub.log').read_text()[-3000:]
        yield dict(url=url, teacher=teacher, student=student, base=base, course=course, proc=proc)
    finally:
        print((base / 'hub.log').read_text()[-6000:])  # shown when a test failed
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        for pid in started_from(base):  # a proxy left behind by a hub that failed to start
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)


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
    wait_for('the student server', lambda: call(user, token)[1].get('servers', {}).get('', {}).get('ready'))
    return dict(token=token, url=f'{hub["url"]}/user/{hub["student"]}')


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
    assert status == 200 and [s['id'] for s in students] == [hub['student']]
