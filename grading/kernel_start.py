"""Runs inside each grading kernel before the notebook's first cell (IPKernelApp.exec_lines).

- caps the kernel's memory (BPN_MEMORY_LIMIT_MB): its heap and private mappings
  (RLIMIT_DATA), and its whole address space with room for torch's libraries (RLIMIT_AS);
  a cell that asks for more gets a MemoryError instead of taking the machine down;
- caps the size of any one file it writes (RLIMIT_FSIZE, 1 GB);
- no core files from crashes.
Hard limits: code in the notebook can lower them, never raise them.
"""
import os
import resource

_mb = os.environ.pop('BPN_MEMORY_LIMIT_MB', '')
if _mb:
    _data = int(_mb) * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (_data, _data))
    resource.setrlimit(resource.RLIMIT_AS, (_data + 3 * 2**30, _data + 3 * 2**30))
resource.setrlimit(resource.RLIMIT_FSIZE, (2**30, 2**30))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
