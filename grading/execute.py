"""nbgrader's Execute preprocessor, made to survive what a notebook can do to its kernel.

Plain nbgrader gives up on a whole notebook when the kernel dies or stops answering, and
keeps every byte a cell prints. RobustExecute instead:
- stops a cell after `timeout` seconds, and the notebook after `notebook_timeout` seconds
  (the cells left get an error, so their tests score 0, never a free pass);
- when the kernel died (os._exit, a segfault, the memory limit) or ignored the interrupt,
  starts a new kernel, re-runs the cells before the broken one, and carries on;
- keeps at most `max_output_chars` characters and `max_output_lines` lines of each cell's
  printed output, and at most `max_displays` displayed outputs (plots, display()) of at
  most `max_display_bytes` bytes in all, and says how much it dropped.
"""
import copy
from time import monotonic

from jupyter_core.utils import run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from traitlets import Integer

DROPPED = '[grader] dropped {} more characters of output'
DISPLAY_DROPPED = '[grader] dropped {} more displayed outputs'
RICH = ('display_data', 'execute_result', 'update_display_data')


def error(ename, evalue):
    return new_output('error', ename=ename, evalue=evalue, traceback=[f'{ename}: {evalue}'])


class RobustExecute(Execute):
    notebook_timeout = Integer(600, help='seconds for the whole notebook').tag(config=True)
    max_output_chars = Integer(20_000, help='printed characters kept per cell').tag(config=True)
    max_output_lines = Integer(200, help='printed lines kept per cell').tag(config=True)
    max_displays = Integer(20, help='displayed outputs kept per cell').tag(config=True)
    max_display_bytes = Integer(4 * 2**20, help='bytes of displayed outputs kept per cell').tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        self._deadline = monotonic() + self.notebook_timeout
        self._skip = set()  # cells that broke the kernel or timed out: never re-run
        self._printed = {}  # cell index -> [characters kept, lines kept, characters dropped]
        self._shown = {}  # cell index -> [displays kept, bytes kept, displays dropped]
        return super().preprocess(nb, resources, km)

    def _get_timeout(self, cell):
        left = self._deadline - monotonic()
        if cell is not None and left < self.timeout:
            why, seconds = f'stopped: the notebook reached its {self.notebook_timeout} s time limit', max(left, 1)
        else:
            why, seconds = f'stopped after {self.timeout} s, the time limit per cell (an infinite loop?)', self.timeout
        self.error_on_timeout = dict(ename='CellTimeoutError', evalue=why, traceback=[f'CellTimeoutError: {why}'])
        return seconds

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != 'code' or not cell.source.strip():
            return cell, resources
        if self._deadline - monotonic() < 1:
            cell.outputs = [error('CellTimeoutError', f'not run: the notebook had used up its '
                                  f'{self.notebook_timeout} s time limit')]
            return cell, resources
        self._printed[index] = [0, 0, 0]
        self._shown[index] = [0, 0, 0]
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self._broken(cell, index, 'DeadKernelError', 'the kernel died running this cell (os._exit, '
                         'a crash or the memory limit); the grader started a new one and went on')
        except CellTimeoutError:  # the interrupt did not stop the cell
            self._broken(cell, index, 'CellTimeoutError', f'stopped after {self.timeout} s, the time '
                         'limit per cell, and it ignored the interrupt; the grader started a new kernel')
        else:
            if any(o.output_type == 'error' and o.ename == 'CellTimeoutError' for o in cell.outputs):
                self._skip.add(index)
        dropped, hidden = self._printed.pop(index)[2], self._shown.pop(index)[2]
        if dropped:
            cell.outputs.append(new_output('stream', name='stdout', text='\n' + DROPPED.format(dropped) + '\n'))
        if hidden:
            cell.outputs.append(new_output('stream', name='stdout', text='\n' + DISPLAY_DROPPED.format(hidden) + '\n'))
        return cell, resources

    def output(self, outs, msg, display_id, cell_index):
        """Keep only the first max_output_chars characters and max_output_lines lines a cell prints."""
        if msg['msg_type'] == 'stream' and cell_index in self._printed:
            chars, lines, dropped = self._printed[cell_index]
            text = msg['content']['text']
            keep = text[:max(self.max_output_chars - chars, 0)]
            keep = '\n'.join(keep.split('\n')[:max(self.max_output_lines - lines, 0) + 1])
            self._printed[cell_index] = [chars + len(keep), lines + keep.count('\n'), dropped + len(text) - len(keep)]
            if not keep:
                return None
            if keep != text:
                msg = copy.deepcopy(msg)
                msg['content']['text'] = keep
        elif msg['msg_type'] in RICH and cell_index in self._shown:
            kept, size, hidden = self._shown[cell_index]
            n = sum(len(str(v)) for v in msg['content'].get('data', {}).values())
            if kept >= self.max_displays or size + n > self.max_display_bytes:
                self._shown[cell_index][2] += 1
                return None
            self._shown[cell_index] = [kept + 1, size + n, hidden]
        return super().output(outs, msg, display_id, cell_index)

    def _new_kernel(self):
        run_sync(self.km.restart_kernel)(now=True)
        self.kc.stop_channels()
        self.start_new_kernel_client()

    def _broken(self, cell, index, ename, evalue):
        """The kernel is gone or stuck: note it in the cell, then a new kernel with the
        cells before this one run again (their outputs are kept from the first run)."""
        self.log.warning('cell %d: %s: %s', index, ename, evalue)
        cell.outputs.append(error(ename, evalue))
        self._skip.add(index)
        self._new_kernel()
        for j in range(index):
            replay = self.nb.cells[j]
            if replay.cell_type != 'code' or j in self._skip or not replay.source.strip():
                continue
            self._printed[j] = [0, 0, 0]
            self._shown[j] = [0, 0, 0]
            try:
                super().preprocess_cell(copy.deepcopy(replay), self.resources, j)
            except (DeadKernelError, CellTimeoutError):  # it broke this time: go on without it
                self._skip.add(j)
                self._new_kernel()
            finally:
                self.nb.cells[j] = replay  # its outputs from the first run
                self._printed.pop(j)
                self._shown.pop(j)
