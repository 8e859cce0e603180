"""The class gradebook, where `python -m grading` records each student's scores: a fresh
OUT/gradebook.db, or with --db-url the course's own (say PostgreSQL, shared by several grading
machines and the formgrader), which must hold the assignment already. Recording a student
again writes the same scores, so a shard stopped half-way is simply run again. A gradebook is
opened with no course of its own (course_id ''): nbgrader would otherwise add a
'default_course' row, and shards starting at the same moment would race to add it."""
import shutil

from nbgrader.api import Gradebook, InvalidEntry, MissingEntry


def prepare(db_url, out, assignment):
    """The URL to record into: `db_url` once it is known to hold the assignment, else a
    fresh OUT/gradebook.db."""
    if not db_url:
        shutil.copy(assignment.gradebook, out / 'gradebook.db')
        return f'sqlite:///{out / "gradebook.db"}'
    try:
        with Gradebook(db_url, course_id='') as book:
            book.find_assignment(assignment.name)
    except MissingEntry:
        raise SystemExit(f'{db_url} has no assignment {assignment.name}: run '
                         f'nbgrader generate_assignment {assignment.name} --db={db_url} first')
    except Exception as e:
        raise SystemExit(f'cannot open the gradebook {db_url}: ' + f'{type(e).__name__}: {e}'.splitlines()[0])
    return db_url


def record(db_url, assignment, result):
    """Write one student's scores. If another shard writes the same student at the same
    moment, nbgrader's unique keys refuse the second row (never duplicate it): try again."""
    with Gradebook(db_url, course_id='') as book:
        try:
            write(book, assignment, result)
        except InvalidEntry:
            book.db.rollback()
            write(book, assignment, result)


def write(book, assignment, result):
    """result['scores'] as the auto scores of result['student'] in `book` (0 where not scored);
    the graded cells of a notebook the audit held need manual grading: the formgrader lists them."""
    student = result['student']
    book.update_or_create_student(student)
    book.update_or_create_submission(assignment.name, student)
    for name, nb in assignment.notebooks.items():
        for gid in nb.graded:
            grade = book.find_grade(gid, name, assignment.name, student)
            grade.auto_score = result['scores'].get(name, {}).get(gid, 0.0)
            grade.needs_manual_grade = name in result.get('held', ())
    book.db.commit()
