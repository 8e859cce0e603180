"""Build the student's share of the kit (`make student-kit`): what a student's Python needs
to work through the released notebooks, and nothing more.

    build/student-kit/                     pip install build/student-kit   (or the wheel)
        pyproject.toml                     from tools/student_pyproject.toml, the kit's pins
        helpers.py or helpers/             as the kit has it
        checks/                            the checks the notebooks' visible test cells call
        data/names.txt                     where helpers looks for it, beside helpers
        notebooks/backprop_ninja/*.ipynb   the released notebooks (not installed: copy them)
    build/backprop_ninja_student-<version>-py3-none-any.whl

No solution goes in: not solutions/, not nbsrc/ (the notebooks' sources), not tools/ or
grading/. tests/test_student_kit.py greps the share for every line of every answer cell.
"""
import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / 'tools' / 'student_pyproject.toml'
RELEASE = ROOT / 'notebooks' / 'backprop_ninja'
NEEDS = dict(dependencies=['torch', 'numpy', 'matplotlib', 'tqdm', 'ipykernel'],
             lab=['jupyterlab', 'nbgrader', 'jsonschema'],
             hub=['jupyterlab', 'nbgrader', 'jsonschema', 'jupyterhub'])


def kit_pins():
    """{package name: 'name==version'} from the kit's pyproject.toml, extras included."""
    project = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
    specs = project['dependencies'] + sum(project.get('optional-dependencies', {}).values(), [])
    return {re.split(r'[\[=<>~! ]', s, maxsplit=1)[0].lower(): s for s in specs}


def names_txt():
    """Where helpers reads the names, relative to the kit: data/names.txt today."""
    sys.path.insert(0, str(ROOT))
    import helpers
    return Path(helpers.NAMES_TXT).resolve().relative_to(ROOT)


def copy_package(src, dst):
    """A package's .py files and data, never its caches; its dotted names and data files."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc', '.ipynb_checkpoints'))
    packages, data = [], {}
    for folder in [dst, *sorted(p for p in dst.rglob('*') if p.is_dir())]:
        if (folder / '__init__.py').exists():
            name = '.'.join(folder.relative_to(dst.parent).parts)
            packages.append(name)
            files = [f.name for f in folder.iterdir() if f.is_file() and f.suffix != '.py']
            if files:
                data[name] = files
    return packages, data


def build(out):
    share = out / 'student-kit'
    shutil.rmtree(share, ignore_errors=True)
    share.mkdir(parents=True)
    modules, packages, data = [], [], {}
    if (ROOT / 'helpers.py').is_file():
        shutil.copy(ROOT / 'helpers.py', share)
        modules.append('helpers')
    else:
        found, files = copy_package(ROOT / 'helpers', share / 'helpers')
        packages += found
        data.update(files)
    found, files = copy_package(ROOT / 'checks', share / 'checks')
    packages += found
    data.update(files)
    names = names_txt()
    (share / names).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / names, share / names)
    holder = '.'.join(names.parent.parts)
    if holder not in packages:
        packages.append(holder)  # a folder without __init__.py: setuptools ships it as a namespace
    data.setdefault(holder, []).append(names.name)
    (share / 'notebooks' / 'backprop_ninja').mkdir(parents=True)
    for nb in sorted(RELEASE.glob('*.ipynb')):
        shutil.copy(nb, share / 'notebooks' / 'backprop_ninja')
    pins = kit_pins()
    quoted = lambda names: ', '.join(f'"{n}"' for n in names)  # noqa: E731
    version = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['version']
    text = TEMPLATE.read_text()
    for key, value in dict(version=version, modules=quoted(modules), packages=quoted(packages),
                           package_data='\n'.join(f'"{k}" = [{quoted(v)}]' for k, v in data.items()),
                           **{k: quoted(pins[n] for n in v) for k, v in NEEDS.items()}).items():
        text = text.replace('{' + key + '}', value)
    (share / 'pyproject.toml').write_text(text)
    return share


def wheel(share, out):
    """The share as a wheel, built from a copy (setuptools leaves build/ and egg-info behind)."""
    for old in out.glob('backprop_ninja_student-*.whl'):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / 'student-kit'
        shutil.copytree(share, copy)
        subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation',
                        '--disable-pip-version-check', '-w', str(out), str(copy)], check=True)
    return next(out.glob('backprop_ninja_student-*.whl'))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', type=Path, default=ROOT / 'build', help='folder for student-kit/ and the wheel')
    args = parser.parse_args()
    out = args.out.resolve()
    share = build(out)
    print(f'{share}\n{wheel(share, out)}')


if __name__ == '__main__':
    main()
