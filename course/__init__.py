"""The instructor and CI side of the course: never imported by a notebook, never shipped to students.

One command line, `python -m course <command>` (the Makefile's targets call it):

    run       execute notebooks headless with papermill (make run)
    release   regenerate assignments/ from solutions/ with nbgrader (make release)
    grade     autograde submitted/ into build/grades.csv and feedback (make grade)
    publish   write the student tree build/student/ (make publish)
    bench     print the benchmark figures (make bench)
    header    stamp/check the standard header cells of every notebook
    datasets  regenerate the tiny profile's shipped datasets

Students only ever import `helpers`; `helpers` never imports `course`.
"""
