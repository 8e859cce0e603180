# nbgrader settings every account of the course shares (students and instructor): put this
# file in /etc/jupyter/ on the hub's machine (or name its folder in JUPYTER_CONFIG_PATH).
# The instructor's course folder keeps its own nbgrader_config.py: the kit's.
import os

c = get_config()  # noqa: F821 (nbgrader provides get_config)

# the course id under which the exchange files assignments, submissions and feedback
c.CourseDirectory.course_id = 'backprop_ninja'
# one folder that every account can write into: mode 1777 (sticky), as nbgrader documents
c.Exchange.root = os.environ.get('BPN_EXCHANGE', '/srv/nbgrader/exchange')
