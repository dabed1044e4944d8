"""The eventlet program of docs/howto/flask.md.

Checked by ``mypy --strict`` (tests/test_typing.py), never run.
"""

import eventlet

eventlet.monkey_patch()  # before any other import

import eventlet.wsgi
from app import app  # the Flask-Sock app above

eventlet.wsgi.server(eventlet.listen(("127.0.0.1", 5000)), app)
