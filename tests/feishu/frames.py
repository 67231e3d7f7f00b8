"""Long-connection frames: lark-oapi's own protobuf ``pbbp2.Frame`` (``lark_oapi/ws/pb``).

A frame has ``SeqID``, ``LogID``, ``service``, ``method`` (required in proto2),
``headers`` (key/value pairs) and ``payload`` (bytes). ``method`` 0 is a control frame,
1 a data frame.

* The client pings: control frame, header ``type=ping``, ``service`` = the ``service_id``
  of its URL. The server answers ``type=pong`` whose payload may carry a JSON
  ``ClientConfig`` (``ReconnectCount``, ``ReconnectInterval``, ``ReconnectNonce``,
  ``PingInterval``, seconds) that the SDK applies at once.
* The server pushes events as data frames with headers ``type`` (``event``; ``card`` is
  ignored by the Python SDK), ``message_id``, ``sum`` (number of parts), ``seq`` (this
  part, from 0) and ``trace_id``; payload = the event JSON (or one slice of it).
* The client acks by sending the *same* frame back (same headers plus ``biz_rt``, the
  handler's milliseconds) with payload ``{"code": 200}`` (500 if its handler raised) and,
  for callbacks that return something (card actions), ``"data"``: base64 of the JSON
  answer.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from lark_oapi.ws.pb.pbbp2_pb2 import Frame

CONTROL = 0
DATA = 1


def headers_of(frame: Frame) -> dict[str, str]:
    return {h.key: h.value for h in frame.headers}


def make(method: int, service: int, headers: dict[str, str], payload: bytes = b"", *, seq_id: int = 0) -> Frame:
    frame = Frame()
    frame.SeqID = seq_id
    frame.LogID = 0
    frame.service = service
    frame.method = method
    for key, value in headers.items():
        header = frame.headers.add()
        header.key = key
        header.value = value
    if payload:
        frame.payload = payload
    return frame


def pong(service: int, client_config: dict[str, Any] | None) -> bytes:
    payload = json.dumps(client_config).encode() if client_config else b""
    return make(CONTROL, service, {"type": "pong"}, payload).SerializeToString()


def event_parts(
    service: int, message_id: str, trace_id: str, payload: bytes, *, frame_type: str = "event", parts: int = 1
) -> list[bytes]:
    """The data frames of one push: ``payload`` cut into ``parts`` slices (``sum``/``seq``)."""
    size = -(-len(payload) // parts) if payload else 0
    slices = [payload[i * size : (i + 1) * size] for i in range(parts)]
    out = []
    for seq, piece in enumerate(slices):
        headers = {
            "type": frame_type,
            "message_id": message_id,
            "sum": str(parts),
            "seq": str(seq),
            "trace_id": trace_id,
        }
        out.append(make(DATA, service, headers, piece, seq_id=seq).SerializeToString())
    return out


def parse(data: bytes) -> Frame:
    frame = Frame()
    frame.ParseFromString(data)
    return frame


def ack_of(frame: Frame) -> tuple[int | None, Any]:
    """An ack frame's ``code`` and its decoded ``data`` (None when it carries none)."""
    try:
        body = json.loads(frame.payload or b"{}")
    except ValueError:
        return None, None
    data = body.get("data")
    if data:
        try:
            data = json.loads(base64.b64decode(data))
        except ValueError:
            pass
    return body.get("code"), data
