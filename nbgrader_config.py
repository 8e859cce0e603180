# nbgrader course settings. Run nbgrader from the kit's root: it is the course directory.
c = get_config()  # noqa: F821 (nbgrader provides get_config)

c.CourseDirectory.source_directory = 'solutions'
c.CourseDirectory.release_directory = 'notebooks'
# The stub leaves the answers None, so cmp and the checks say 'not written yet' for each one
# still to do (a `raise NotImplementedError()` would stop the cell before cmp could say it).
c.ClearSolutions.code_stub = {'python': '# YOUR CODE HERE'}
# nbgrader stops a cell after 30 s by default; notebook 4 trains for about a minute
# (longer with a slow step). Lower the steps with BPN_STEPS to grade faster.
c.Execute.timeout = 600
