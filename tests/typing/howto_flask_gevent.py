"""The gevent program of docs/howto/flask.md.

Checked by ``mypy --strict`` (tests/test_typing.py), never run.
"""

from gevent import monkey

monkey.patch_all()  # before any other import

from app import app
from gevent.pywsgi import WSGIServer

WSGIServer(("127.0.0.1", 5000), app).serve_forever()
