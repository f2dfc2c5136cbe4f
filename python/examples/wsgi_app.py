"""A plain WSGI endpoint over zocalo: POST /ask {"message", "user"} -> the answer as JSON.

One Zocalo per process, shared by every request thread (calls release the GIL while they
wait). Each user gets their own conversation through `conv_key`.

    python python/examples/wsgi_app.py 8080        # wsgiref's server, for trying it out
    curl -s localhost:8080/ask -d '{"message": "Hi", "user": "ada"}'

Any WSGI server (gunicorn --threads, waitress, ...) serves `app` the same way.
"""

import json
import sys
from wsgiref.simple_server import make_server

import zocalo

z = zocalo.Zocalo()


def app(environ, start_response):
    def reply(status, body):
        data = json.dumps(body).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    if environ["PATH_INFO"] != "/ask" or environ["REQUEST_METHOD"] != "POST":
        return reply("404 Not Found", {"error": "POST /ask"})
    try:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        req = json.loads(environ["wsgi.input"].read(size) or b"{}")
        answer = z.ask(req.get("message", ""), conv_key=f"web:{req.get('user', 'anonymous')}")
    except (ValueError, zocalo.UsageError) as e:
        return reply("400 Bad Request", {"error": str(e)})
    except zocalo.Error as e:
        return reply("502 Bad Gateway", {"error": str(e)})
    return reply("200 OK", {"text": answer["text"], "conversation_id": answer["conversation_id"]})


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    with make_server("127.0.0.1", port, app) as server:
        print(f"listening on http://127.0.0.1:{server.server_port}", flush=True)
        server.serve_forever()
