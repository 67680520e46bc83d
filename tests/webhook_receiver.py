"""A webhook receiver for the event tests: its own process, on a loopback port.

    python tests/webhook_receiver.py --log calls.jsonl --ready port.txt \
        [--port N] [--fail-rate 0.3] [--slow-rate 0.1] [--slow-seconds 3] [--seed 1]

Every call is appended to ``--log`` as one JSON line (its headers, its body
as text, and what it was answered) *before* it is answered, so a call the
sender gave up on (a timeout) is still on record: that is what the receiver
saw. A share of calls is answered 500 (``--fail-rate``) and a share is held
past the sender's timeout before a 200 (``--slow-rate``). The chosen port is
written to ``--ready`` once the server listens.
"""
from __future__ import annotations

import argparse
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def make_handler(args: argparse.Namespace) -> type[BaseHTTPRequestHandler]:
    chance = random.Random(args.seed)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            with lock:
                roll = chance.random()
                answer = ("fail" if roll < args.fail_rate
                          else "slow" if roll < args.fail_rate + args.slow_rate else "ok")
                with open(args.log, "a") as log:
                    log.write(json.dumps({
                        "at": time.time(), "answer": answer,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body.decode()}) + "\n")
            if answer == "slow":
                time.sleep(args.slow_seconds)
            self.send_response(500 if answer == "fail" else 200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", required=True)
    parser.add_argument("--ready", required=True)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--slow-rate", type=float, default=0.0)
    parser.add_argument("--slow-seconds", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args))
    server.daemon_threads = True
    ready = Path(args.ready)
    ready.with_suffix(".tmp").write_text(str(server.server_address[1]))
    ready.with_suffix(".tmp").rename(ready)
    server.serve_forever()


if __name__ == "__main__":
    main()
