# JupyterHub for a course of backprop-ninja: `jupyterhub -f deploy/jupyterhub_config.py`, as root
# on the course's machine (the hub starts each student's server as their own Unix account).
#
# - students: the members of the Unix group BPN_STUDENT_GROUP; each server opens on the
#   student's own copy of the assignment, fetched from nbgrader's exchange on first start;
# - the instructor (BPN_INSTRUCTOR) gets nbgrader's formgrader as a hub service, run as
#   their account in their course folder (BPN_COURSE_DIR), whose nbgrader_config.py names
#   the course's PostgreSQL gradebook (c.CourseDirectory.db_url);
# - the instructor's account holds the whole kit (BPN_KIT, mode 700): the formgrader runs on
#   its .venv; students' servers run on the student Python (BPN_STUDENT_ENV), a virtual
#   environment where root installed the student share (`make student-kit`), which holds
#   no answer;
# - the exchange is shared: deploy/nbgrader_config.py, copied to /etc/jupyter/
#   (BPN_JUPYTER_CONFIG), read by every server;
# - limits per user: processes and data memory, enforced on every process of a server.
# Log in with the machine's passwords (PAM, JupyterHub's default authenticator).
import asyncio
import grp
import os
import pwd
from pathlib import Path

from jupyterhub.spawner import set_user_setuid

c = get_config()  # noqa: F821 (JupyterHub provides get_config)

HERE = Path(__file__).resolve().parent
KIT_BIN = Path(os.environ.get('BPN_KIT', HERE.parent)) / '.venv' / 'bin'  # the instructor's only
STUDENT_BIN = Path(os.environ.get('BPN_STUDENT_ENV', '/opt/backprop-ninja')) / 'bin'
ASSIGNMENT = 'backprop_ninja'
INSTRUCTOR = os.environ.get('BPN_INSTRUCTOR', 'instructor')
COURSE_DIR = os.environ.get('BPN_COURSE_DIR', f'/home/{INSTRUCTOR}/course')
GROUP = os.environ.get('BPN_STUDENT_GROUP', 'students')
try:
    STUDENTS = set(grp.getgrnam(GROUP).gr_mem)
    INSTRUCTOR_HOME = pwd.getpwnam(INSTRUCTOR).pw_dir
except KeyError as e:
    raise SystemExit(f'deploy/jupyterhub_config.py: {e.args[0]}: the students are the members of the Unix group '
                     f'{GROUP} (BPN_STUDENT_GROUP), the instructor is the account {INSTRUCTOR} (BPN_INSTRUCTOR)')
FORMGRADER_URL = os.environ.get('BPN_FORMGRADER_URL', 'http://127.0.0.1:9999')
MEMORY = int(os.environ.get('BPN_MEMORY_MB', 3072)) * 2**20  # data memory of each process of a user's server
PROCESSES = os.environ.get('BPN_PROCESSES', '256')  # processes a user may run at once

c.JupyterHub.bind_url = os.environ.get('BPN_HUB_URL', 'http://:8000')
c.Authenticator.allowed_users = STUDENTS | {INSTRUCTOR}
c.JupyterHub.concurrent_spawn_limit = 20

# students' servers: the student Python and the shared nbgrader settings
SHARED_ENV = {
    'PATH': f'{STUDENT_BIN}:/usr/local/bin:/usr/bin:/bin',
    'JUPYTER_CONFIG_PATH': os.environ.get('BPN_JUPYTER_CONFIG', '/etc/jupyter'),
    'BPN_EXCHANGE': os.environ.get('BPN_EXCHANGE', '/srv/nbgrader/exchange'),
}
c.Spawner.environment = SHARED_ENV
c.Spawner.cmd = ['prlimit', f'--data={MEMORY}', f'--nproc={PROCESSES}', '--',
                 str(STUDENT_BIN / 'jupyterhub-singleuser')]
# a class that logs in at once on a small machine: a server may need minutes to start
c.Spawner.start_timeout = 300
c.Spawner.http_timeout = 300
c.Spawner.default_url = f'/lab/tree/{ASSIGNMENT}'
# students grade nothing: no formgrader in their servers
c.Spawner.args = ['--ServerApp.jpserver_extensions=nbgrader.server_extensions.formgrader=False']


async def fetch_assignment(spawner):
    """A student's server opens on their own copy: fetched from the exchange as them, once."""
    name = spawner.user.name
    home = Path(pwd.getpwnam(name).pw_dir)
    if name == INSTRUCTOR or (home / ASSIGNMENT).exists():
        return
    fetch = await asyncio.create_subprocess_exec(
        str(STUDENT_BIN / 'nbgrader'), 'fetch_assignment', ASSIGNMENT, preexec_fn=set_user_setuid(name), cwd=home,
        env=dict(SHARED_ENV, HOME=str(home), USER=name), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await fetch.communicate()
    if fetch.returncode != 0:  # not released yet: the Assignments tab fetches it later
        spawner.log.warning('fetch_assignment for %s: %s', name, err.decode(errors='replace').strip()[-300:])


c.Spawner.pre_spawn_hook = fetch_assignment

c.JupyterHub.services = [dict(
    name='formgrader',
    url=FORMGRADER_URL,
    user=INSTRUCTOR,
    cwd=COURSE_DIR,
    command=['prlimit', f'--data={MEMORY}', '--', str(KIT_BIN / 'jupyterhub-singleuser')],
    environment=dict(SHARED_ENV, PATH=f'{KIT_BIN}:/usr/local/bin:/usr/bin:/bin', HOME=INSTRUCTOR_HOME, USER=INSTRUCTOR,
                     JUPYTERHUB_DEFAULT_URL='/formgrader'),
    oauth_no_confirm=True,
)]
c.JupyterHub.load_roles = [dict(
    name='instructor',
    users=[INSTRUCTOR],
    scopes=['self', 'access:services!service=formgrader'],
)]
