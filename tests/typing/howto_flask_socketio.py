"""The python-socketio application of docs/howto/flask.md.

Checked by ``mypy --strict`` (tests/test_typing.py), never run.
"""

import socketio
from flask import Flask

sio = socketio.Server(async_mode="threading")
app = Flask(__name__)
app.wsgi_app = socketio.WSGIApp(sio, app.wsgi_app)


@sio.on("hello")
def hello(sid: str, data: object) -> None:
    sio.emit("reply", {"echo": data}, to=sid)
