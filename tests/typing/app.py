"""The Flask-Sock application of docs/howto/flask.md (imported by the eventlet and
gevent examples as ``from app import app``).

Checked by ``mypy --strict`` (tests/test_typing.py), never run.
"""

from flask import Flask
from flask_sock import Sock

from simple_websocket import Server

app = Flask(__name__)
app.config["SOCK_SERVER_OPTIONS"] = {
    "ping_interval": 25,
    "subprotocols": ["chat"],
}
sock = Sock(app)


@sock.route("/echo")
def echo(ws: Server) -> None:
    while True:
        # ConnectionClosed when the client leaves:
        message = ws.receive()
        ws.send(message)
