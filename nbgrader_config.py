# nbgrader course settings. Run nbgrader from the kit's root: it is the course directory.
import os
import sys

c = get_config()  # noqa: F821 (nbgrader provides get_config)

# nbgrader runs `alembic` by PATH when it creates a gradebook: find it next to this nbgrader,
# so that .venv/bin/nbgrader works without an activated environment
os.environ['PATH'] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', '')

c.CourseDirectory.source_directory = 'solutions'
c.CourseDirectory.release_directory = 'notebooks'
# The stub leaves the answers None, so cmp and the checks say 'not written yet' for each one
# still to do (a `raise NotImplementedError()` would stop the cell before cmp could say it).
c.ClearSolutions.code_stub = {'python': '# YOUR CODE HERE'}
# nbgrader stops a cell after 30 s by default; notebook 4 trains for about a minute
# (longer with a slow step). Lower the steps with BPN_STEPS to grade faster.
c.Execute.timeout = 600
# The course's id: nbgrader's exchange files assignments under it, and a gradebook on a
# database server that checks foreign keys (PostgreSQL) needs the course row that nbgrader
# only adds when the id is not empty.
c.CourseDirectory.course_id = 'backprop_ninja'
