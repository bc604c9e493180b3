"""The local web page of ``hamopt demo``: playground, reversibility and results browser.

Importing this package needs no web framework: :mod:`hamopt.web.results` (read a lab results
directory behind a path guard) and :mod:`hamopt.web.figures` (plotly figures from the library's
result dataclasses) are plain Python; only :mod:`hamopt.web.app` imports Gradio.
"""
