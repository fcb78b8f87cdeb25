"""Calls pusher-http-python (PyPI `pusher`, unmodified) for the compatibility suite.

python.test.mjs starts this once per test file as `driver.py HOST PORT` and writes one JSON
request per line to stdin: {"id": n, "app": {"id", "key", "secret"}, "call": name,
"args": [...], "kwargs": {...}}. Each gets one JSON line on stdout: {"id": n, "result": ...}
or {"id": n, "error": {"type": exception class, "message": text}}. The library does the HTTP
requests itself, against the switchboard server at HOST:PORT.
"""

import json
import sys

import pusher

# The library's public calls the suite exercises; nothing else can be named.
CALLS = {
    "trigger",
    "trigger_batch",
    "send_to_user",
    "channels_info",
    "channel_info",
    "users_info",
    "terminate_user_connections",
    "authenticate",
    "authenticate_user",
}


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    clients = {}
    for line in sys.stdin:
        request = json.loads(line)
        answer = {"id": request["id"]}
        try:
            app = request["app"]
            credentials = (app["id"], app["key"], app["secret"])
            if credentials not in clients:
                clients[credentials] = pusher.Pusher(
                    app_id=app["id"],
                    key=app["key"],
                    secret=app["secret"],
                    ssl=False,
                    host=host,
                    port=port,
                )
            call = request["call"]
            if call not in CALLS:
                raise ValueError("not a call the suite makes: %s" % call)
            method = getattr(clients[credentials], call)
            answer["result"] = method(*request.get("args", []), **request.get("kwargs", {}))
        except Exception as error:  # every failure goes back to the test, which asserts on it
            answer["error"] = {"type": type(error).__name__, "message": str(error)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
