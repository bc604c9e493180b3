"""The local web page of ``hamopt demo``: playground, reversibility and results browser.

Importing this package needs no web framework. Plain Python: :mod:`hamopt.web.results` (read a
lab results directory behind a path guard) and the plotly figures of the library's results —
:mod:`hamopt.web.playground_figures`, :mod:`hamopt.web.lab_figures` and their shared style
:mod:`hamopt.web.plot_style`, all re-exported by :mod:`hamopt.web.figures`. Gradio is imported by
the page only: :mod:`hamopt.web.app` (``build_app``) assembles the tabs
:mod:`hamopt.web.playground_tab`, :mod:`hamopt.web.reversibility_tab` and
:mod:`hamopt.web.results_tab`, whose handlers read their controls through
:mod:`hamopt.web.controls`.
"""
