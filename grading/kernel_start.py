"""Runs inside each grading kernel before the notebook's first cell (IPKernelApp.exec_lines).

- caps the kernel's memory (BPN_MEMORY_LIMIT_MB): its heap and private mappings
  (RLIMIT_DATA), and its whole address space with room for torch's libraries (RLIMIT_AS);
  a cell that asks for more gets a MemoryError instead of taking the machine down;
- no core files from crashes;
- imports the kit's modules before any student code runs.
Hard limits: code in the notebook can lower them, never raise them.
"""
import importlib
import os
import pkgutil
import resource

_mb = os.environ.pop('BPN_MEMORY_LIMIT_MB', '')
if _mb:
    _data = int(_mb) * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (_data, _data))
    resource.setrlimit(resource.RLIMIT_AS, (_data + 3 * 2**30, _data + 3 * 2**30))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

import checks  # noqa: E402
import helpers  # noqa: E402,F401

for _module in pkgutil.iter_modules(checks.__path__):
    try:
        importlib.import_module(f'checks.{_module.name}')
    except Exception:  # a broken check shows up in its own test cell
        pass
