#!/usr/bin/env python3
"""A test-only AMQP app written with pika (PyPI), run by dwell's tap tests once against the broker
and once through the sidecar's tap; the tests compare what it prints. It knows nothing of dwell.

Usage: tap_app.py MODE URL ARGS...   Every line on stdout is one JSON object.
  compare URL QA QB STAMP_MS   publish (confirmed, 50 channels) to QA and QB on the consuming
                               connection, consume QA (the first delivery nacked once), basic.get
                               QB; one line per delivery, then {"done": N}
  heartbeat URL Q              heartbeat=2, 10 s idle, then a publish + get: {"alive": true}
  cancel URL Q                 consume Q, delete it: {"cancelled": true} on the broker's cancel
  blocked URL Q                {"ready"}; publish until connection.blocked: {"blocked"}, then
                               {"unblocked"}
  close URL NAME               {"ready"}; on a broker-initiated close: {"closed_at_ms": T, ...}
"""
import hashlib
import json
import sys
import time

import pika

SIZES = [0, 1, 17, 4096, 131072, 300000, 1 << 20, 5]
FILLERS = 42


def emit(obj):
    print(json.dumps(obj, sort_keys=True), flush=True)


def now_ms():
    return int(time.time() * 1000)


def plain(v):
    if isinstance(v, bytes):
        return {"bytes": v.hex()}
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in sorted(v.items())}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v


def props_of(p):
    names = ["content_type", "content_encoding", "headers", "delivery_mode", "priority",
             "correlation_id", "reply_to", "expiration", "message_id", "timestamp", "type",
             "user_id", "app_id", "cluster_id"]
    return {n: plain(getattr(p, n)) for n in names}


def messages(stamp_ms):
    out = []
    for i, n in enumerate(SIZES + [i % 7 for i in range(FILLERS)]):
        body = bytes((b * 31 + i) % 256 for b in range(n))
        headers = {"timestamp_in_ms": stamp_ms, "note": "n%d" % i, "flag": i % 2 == 0,
                   "nested": {"depth": i}}
        kw = dict(timestamp=stamp_ms // 1000, headers=headers, message_id="m%d" % i,
                  delivery_mode=2)
        if i % 2:
            kw.update(content_type="application/octet-stream", correlation_id="c%d" % i,
                      priority=3, app_id="tap-test", expiration="600000")
        out.append((body, pika.BasicProperties(**kw)))
    return out


def delivery(role, method, props, body):
    return {"role": role, "len": len(body), "sha256": hashlib.sha256(body).hexdigest(),
            "props": props_of(props), "redelivered": method.redelivered}


def compare(url, qa, qb, stamp_ms):
    conn = pika.BlockingConnection(pika.URLParameters(url))
    chans = [conn.channel() for _ in range(50)]
    for ch in chans:
        ch.confirm_delivery()
    for q in (qa, qb):
        chans[0].queue_declare(q)
    msgs = messages(int(stamp_ms))
    for i, (body, props) in enumerate(msgs):
        for q in (qa, qb):
            # confirm_delivery: returns once the broker confirmed, raises on a nack.
            chans[i % 50].basic_publish("", q, body, props)
    n = 0
    consumer = conn.channel()
    consumer.basic_qos(prefetch_count=1)
    nacked = False
    for method, props, body in consumer.consume(qa, inactivity_timeout=20):
        if method is None:
            sys.exit("no delivery within 20 s")
        emit(delivery("consumed", method, props, body))
        n += 1
        if not nacked:
            consumer.basic_nack(method.delivery_tag, requeue=True)
            nacked = True
        else:
            consumer.basic_ack(method.delivery_tag)
        if n == len(msgs) + 1:
            break
    consumer.cancel()
    getter = conn.channel()
    while True:
        method, props, body = getter.basic_get(qb)
        if method is None:
            break
        emit(delivery("got", method, props, body))
        getter.basic_ack(method.delivery_tag)
        n += 1
    for q in (qa, qb):
        getter.queue_delete(q)
    conn.close()
    emit({"done": n})


def heartbeat(url, q):
    conn = pika.BlockingConnection(pika.URLParameters(url + "?heartbeat=2"))
    ch = conn.channel()
    ch.queue_declare(q)
    # sleep() keeps processing I/O: heartbeats go out and come in while the app is idle.
    conn.sleep(10)
    ch.basic_publish("", q, b"after idle")
    for _ in range(50):
        method, _, body = ch.basic_get(q, auto_ack=True)
        if method:
            break
        conn.sleep(0.1)
    ch.queue_delete(q)
    conn.close()
    emit({"alive": body == b"after idle"})


def cancel(url, q):
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.queue_declare(q)
    cancelled = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    ch.basic_consume(q, lambda *a: None)
    other = conn.channel()
    other.queue_delete(q)
    deadline = time.time() + 10
    while not cancelled and time.time() < deadline:
        conn.process_data_events(time_limit=0.1)
    emit({"cancelled": bool(cancelled)})
    conn.close()


def blocked(url, q):
    params = pika.URLParameters(url)
    conn = pika.BlockingConnection(params)
    state = {"blocked": False, "unblocked": False}
    conn.add_on_connection_blocked_callback(lambda *a: state.update(blocked=True))
    conn.add_on_connection_unblocked_callback(lambda *a: state.update(unblocked=True))
    ch = conn.channel()
    ch.queue_declare(q, auto_delete=True)
    emit({"ready": True})
    deadline = time.time() + 30
    while not state["blocked"] and time.time() < deadline:
        ch.basic_publish("", q, b"x")
        conn.process_data_events(time_limit=0.1)
    emit({"blocked": state["blocked"]})
    while not state["unblocked"] and time.time() < deadline:
        conn.process_data_events(time_limit=0.1)
    emit({"unblocked": state["unblocked"]})
    ch.queue_delete(q)
    conn.close()


def close(url, name):
    params = pika.URLParameters(url)
    params.client_properties = {"connection_name": name}
    conn = pika.BlockingConnection(params)
    emit({"ready": True})
    deadline = time.time() + 30
    try:
        while time.time() < deadline:
            conn.process_data_events(time_limit=0.02)
    except pika.exceptions.ConnectionClosedByBroker as e:
        emit({"closed_at_ms": now_ms(), "reply_code": e.reply_code})
        return
    emit({"closed_at_ms": None})


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    {"compare": compare, "heartbeat": heartbeat, "cancel": cancel, "blocked": blocked,
     "close": close}[mode](*args)
