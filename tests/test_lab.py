"""What a student and a reader meet in `make lab`: JupyterLab started by tools/lab.py, as
`make lab` starts it, driven in headless Debian chromium. Everything runs in a copy of the
kit, so the test's saves never touch the repository."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from tests.kit import ROOT

playwright = pytest.importorskip('playwright.sync_api', reason="the test extra: pip install -e '.[test]'")
CHROMIUM = '/usr/bin/chromium'
if not Path(CHROMIUM).exists():
    pytest.skip('Debian chromium is not installed (make test installs it as root)', allow_module_level=True)

TOKEN = 'backprop-ninja-test'
WAIT = 180_000  # ms; a busy 2-core machine is slow, and waits end on page state, not on time
RUN_WAIT = 900_000  # ms for Run All of one notebook
NOTEBOOKS = ['01_atomic_backprop', '02_fused_cross_entropy', '03_fused_batchnorm', '04_manual_training']
SHOTS = Path(os.environ.get('BPN_SCREENSHOTS') or '')  # keep the screenshots here when set


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    """The lab, started by tools/lab.py in a copy of the kit, with a fresh user's settings."""
    tmp = tmp_path_factory.mktemp('lab')
    kit = tmp / 'kit'
    shutil.copytree(ROOT, kit, ignore=shutil.ignore_patterns(
        '.git', '.venv', 'grades', 'work', '__pycache__', '*.egg-info', '.pytest_cache', 'build'))
    port = free_port()
    env = dict(os.environ, BPN_STEPS='500',  # notebook 4 trains 500 steps, not 200,000
               JUPYTERLAB_SETTINGS_DIR=str(tmp / 'settings'), JUPYTERLAB_WORKSPACES_DIR=str(tmp / 'workspaces'))
    log = open(tmp / 'lab.log', 'w+')
    server = subprocess.Popen([sys.executable, str(kit / 'tools' / 'lab.py'), '--no-browser', f'--port={port}',
                               '--ServerApp.ip=127.0.0.1', f'--IdentityProvider.token={TOKEN}'],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f'http://127.0.0.1:{port}'
    deadline = time.monotonic() + WAIT / 1000
    while True:  # until the server answers
        try:
            if get(f'{base}/api/status?token={TOKEN}')[0] == 200:
                break
        except OSError:
            pass
        assert server.poll() is None, 'the lab exited at start-up:\n' + (tmp / 'lab.log').read_text()
        assert time.monotonic() < deadline, 'the lab never answered:\n' + (tmp / 'lab.log').read_text()
        time.sleep(0.5)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            '--no-sandbox', '--disable-gpu', '--disable-background-networking',
            '--disable-component-update', '--disable-sync', '--no-first-run'])
        page = browser.new_page(viewport={'width': 1400, 'height': 900})
        page.set_default_timeout(WAIT)
        page.goto(f'{base}/?token={TOKEN}')
        page.locator('.jp-DirListing-item', has_text='01_atomic_backprop.ipynb').wait_for()
        yield dict(page=page, base=base, kit=kit, log=tmp / 'lab.log', tmp=tmp)
        browser.close()
    server.terminate()
    server.wait(60)
    log.close()


def shot(lab, name):
    path = lab['tmp'] / f'{name}.png'
    lab['page'].screenshot(path=path)
    if SHOTS.name:
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SHOTS / path.name)


def menu(page, top, item):
    page.locator('.lm-MenuBar-itemLabel', has_text=re.compile(f'^{top}$')).click()
    page.locator('.lm-Menu-itemLabel', has_text=re.compile(f'^{item}$')).click()


def item(page, name):
    return page.locator('.jp-DirListing-itemText', has_text=re.compile(f'^{re.escape(name)}$'))


def open_in_browser(page, *names):
    """Double-click through the file browser, starting at the kit's root. As a person would,
    click the home folder again when its listing has not come after a while (a busy machine
    can lose a refresh); if it never comes, say what the file browser shows."""
    for _ in range(6):
        page.locator('.jp-FileBrowser .jp-BreadCrumbs-home').click()
        try:
            item(page, names[0]).wait_for(timeout=WAIT / 6)
            break
        except playwright.Error:
            pass
    else:
        shown = page.locator('.jp-DirListing-itemText').all_inner_texts()
        raise AssertionError(f'the home folder never listed {names[0]!r}; the file browser shows '
                             f'{page.locator(".jp-FileBrowser .jp-BreadCrumbs").inner_text()!r}: {shown}')
    for name in names:
        item(page, name).dblclick()


def run_all(lab, folder, name):
    """Open folder/name.ipynb from the file browser, Run All, save; return the saved notebook."""
    page = lab['page']
    open_in_browser(page, *folder.split('/'), f'{name}.ipynb')
    panel = page.locator('.jp-NotebookPanel:visible')
    # a kernel connected and idle: Run All before that asks which kernel to start, on a busy machine
    panel.locator('.jp-Toolbar', has_text='Python 3 (ipykernel)').wait_for()
    panel.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for()
    prompts = """() => [...[...document.querySelectorAll('.jp-NotebookPanel')].find(p => p.offsetParent)
                          .querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(p => p.textContent)"""
    menu(page, 'Edit', 'Clear Outputs of All Cells')  # the committed solutions come with outputs
    page.wait_for_function(f'() => {{ const p = ({prompts})(); return p.length > 0 && p.every(t => !/[0-9*]/.test(t)); }}')
    menu(page, 'Run', 'Run All Cells')
    # done when cells have run and none is queued or running ([*]); after an error the rest
    # of the queue is dropped, which the caller sees in the saved notebook
    page.wait_for_function(f'() => {{ const p = ({prompts})(); '
                           'return p.some(t => /[0-9]/.test(t)) && !p.some(t => t.includes("*")); }',
                           timeout=RUN_WAIT)
    panel.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for()
    page.keyboard.press('Control+s')
    page.wait_for_function("""() => {
        const tab = document.querySelector('.lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current');
        return tab && !tab.classList.contains('jp-mod-dirty');
    }""")
    return nbformat.read(lab['kit'] / folder / f'{name}.ipynb', as_version=4)


def shut_down_kernels(lab):
    menu(lab['page'], 'Kernel', 'Shut Down All Kernels…')
    lab['page'].locator('.jp-Dialog button', has_text='Shut Down All').click()


def errors_in(nb):
    return [f'cell {i}: {o.ename}: {o.evalue}' for i, c in enumerate(nb.cells) if c.cell_type == 'code'
            for o in c.outputs if o.output_type == 'error']


def test_lab_opens_on_the_students_own_copy_with_no_instructor_tools_and_no_news(lab):
    page = lab['page']
    assert '/lab/tree/work/backprop_ninja' in page.url
    work = sorted(p.name for p in (lab['kit'] / 'work' / 'backprop_ninja').iterdir())
    assert work == [f'{n}.ipynb' for n in NOTEBOOKS]
    for n in NOTEBOOKS:  # the copy is the release, byte for byte, until the student types
        assert (lab['kit'] / 'work' / 'backprop_ninja' / f'{n}.ipynb').read_bytes() == \
            (lab['kit'] / 'notebooks' / 'backprop_ninja' / f'{n}.ipynb').read_bytes()
    page.locator('.lm-MenuBar-itemLabel', has_text=re.compile('^Help$')).wait_for()
    shot(lab, 'lab-start')
    menus = page.locator('.lm-MenuBar-itemLabel').all_inner_texts()
    assert 'Nbgrader' not in menus and 'Help' in menus
    text = page.locator('body').inner_text()
    for tool in ['Formgrader', 'Create Assignment', 'Course List', 'Assignment List']:
        assert tool not in text
    assert 'news' not in text.lower()  # JupyterLab's "receive official Jupyter news?" toast
    for url in ['/formgrader', '/formgrader/api/assignments', '/courses']:
        with pytest.raises(urllib.error.HTTPError, match='404'):
            get(f'{lab["base"]}{url}?token={TOKEN}')


def test_solutions_are_reachable_and_run_clean_with_their_pictures(lab):
    page = lab['page']
    open_in_browser(page, 'solutions', 'backprop_ninja')
    page.locator('.jp-DirListing-itemText', has_text='04_manual_training.ipynb').wait_for()
    shot(lab, 'lab-solutions')
    for name in NOTEBOOKS:
        nb = run_all(lab, 'solutions/backprop_ninja', name)
        code = [c for c in nb.cells if c.cell_type == 'code']
        assert all(c.execution_count for c in code), f'{name}: Run All left cells unrun'
        assert errors_in(nb) == [], name
        pictures = sum('image/png' in o.get('data', {}) for c in code for o in c.outputs)
        assert pictures or name == '01_atomic_backprop', f'{name} draws no picture'
        panel = page.locator('.jp-NotebookPanel:visible')
        shown = panel.locator('.jp-OutputArea-output img')
        assert shown.count() == pictures, name
        for i in range(pictures):
            shown.nth(i).scroll_into_view_if_needed()
            assert shown.nth(i).evaluate('img => img.complete && img.naturalWidth > 100'), f'{name} image {i}'
        if pictures:
            shown.nth(pictures - 1).scroll_into_view_if_needed()
        shot(lab, f'lab-solution-{name}')
        shut_down_kernels(lab)
    text = ''.join(o.get('text', '') for c in nb.cells if c.cell_type == 'code' for o in c.outputs)
    assert 'training for 500 steps' in text  # BPN_STEPS reaches the lab's kernels


def test_validate_button_works_on_a_students_notebook_and_nbgrader_logs_no_error(lab):
    page = lab['page']
    open_in_browser(page, 'work', 'backprop_ninja', '01_atomic_backprop.ipynb')
    panel = page.locator('.jp-NotebookPanel:visible')
    panel.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for()
    panel.locator('.jp-Toolbar-item', has_text='Validate').click()
    dialog = page.locator('.jp-Dialog-content')
    dialog.locator('.jp-Dialog-body', has_text=re.compile(r'\S')).wait_for()
    shot(lab, 'lab-validate')
    said = dialog.inner_text()
    # nothing is answered yet, so nbgrader's validator names the first test cell that fails
    assert said.startswith('Validation Results') and 'The following cell failed' in said, said
    assert '# stage 1:' in said, said
    dialog.locator('.jp-Dialog-footer button').last.click()
    dialog.wait_for(state='detached')
    assert_no_error_logged(lab)


def assert_no_error_logged(lab):
    log = lab['log'].read_text()
    assert 'not a subdirectory' not in log
    assert not re.search(r'^\[E ', log, re.M), log
    assert 'Traceback' not in log, log


def test_a_students_first_unanswered_cell_says_not_written_yet(lab):
    page = lab['page']
    nb = run_all(lab, 'work/backprop_ninja', '01_atomic_backprop')
    page.locator('.jp-NotebookPanel:visible .jp-CodeCell', has_text="cmp('logprobs'").scroll_into_view_if_needed()
    shot(lab, 'lab-student-run-all')
    shut_down_kernels(lab)
    first = next(c for c in nb.cells if c.metadata.get('nbgrader', {}).get('grade_id') == 'run_stage1')
    said = ''.join(o.get('text', '') + o.get('evalue', '') for o in first.outputs)
    assert 'not written yet' in said and 'NotImplementedError' not in said, said


def test_the_lab_logged_no_error_all_along(lab):
    assert_no_error_logged(lab)
