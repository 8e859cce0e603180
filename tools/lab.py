"""Open the exercises in JupyterLab: `make lab` runs this, and so does the browser test.

    python tools/lab.py [jupyter lab options...]

The first time, the released notebooks (notebooks/backprop_ninja/) are copied into
work/backprop_ninja/, which git ignores: that copy is the student's, and nothing in the
kit ever writes to it again. A notebook added to a later release is copied in; one the
student already has is never replaced. JupyterLab is rooted at the kit, so solutions/ is
one click away, and opens on the student's copy. Its settings are in tools/jupyter/
(reached through JUPYTER_CONFIG_PATH): nbgrader's instructor tools off, Validate on,
no news pop-up.
"""
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / 'notebooks' / 'backprop_ninja'
WORK = ROOT / 'work' / 'backprop_ninja'
CONFIG = ROOT / 'tools' / 'jupyter'


def copy_release(release=RELEASE, work=WORK):
    """Copy every file of the release that the student's copy lacks; return their names."""
    copied = []
    for src in sorted(release.rglob('*')):
        dst = work / src.relative_to(release)
        if src.is_file() and not dst.exists() and '.ipynb_checkpoints' not in src.parts:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            copied.append(str(src.relative_to(release)))
    return copied


def main(args):
    copied = copy_release()
    where = WORK.relative_to(ROOT)
    if copied:
        print(f'copied {", ".join(copied)} into {where}/ (your copy: make release and git pull never touch it)')
    else:
        print(f'your notebooks are in {where}/ (kept as you left them)')
    env = dict(os.environ)
    env['JUPYTER_CONFIG_PATH'] = os.pathsep.join(filter(None, [str(CONFIG), env.get('JUPYTER_CONFIG_PATH')]))
    cmd = [sys.executable, '-m', 'jupyterlab', f'--ServerApp.root_dir={ROOT}',
           f'--LabApp.default_url=/lab/tree/{where.as_posix()}']
    if os.geteuid() == 0:  # as root, as in a container
        cmd.append('--allow-root')
    os.chdir(ROOT)  # nbgrader's Validate reads nbgrader_config.py from here
    os.execve(sys.executable, cmd + args, env)


if __name__ == '__main__':
    main(sys.argv[1:])
