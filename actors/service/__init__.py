"""The service as a program: command line, settings, start-up procedures, tools.

Rule: these modules run on the main thread, before the actors start or outside the
service (``dockmirror-trace``); a failure here ends the start with one clear line and
exit code 2 instead of retrying. ``supervisor.py`` is the composition root that uses them.
"""
