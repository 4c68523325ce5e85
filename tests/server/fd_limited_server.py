# SPDX-License-Identifier: GPL-3.0-or-later
"""A SpectrumServer in a process of its own that may open only a few file descriptors.

    python tests/server/fd_limited_server.py OPEN_FILES [SETTING=VALUE ...]

Sets RLIMIT_NOFILE (soft and hard) to OPEN_FILES, starts a server on 127.0.0.1, port 0,
with the settings given (integers or floats), prints its port on a line of its own, and
publishes a ``status`` message every 0.2 s until its stdin closes; then it stops the
server and exits. The log goes to stderr. The tests run it to see what clients of a
server out of file descriptors get (tests/server/test_fd_limit.py).
"""

from __future__ import annotations

import logging
import resource
import sys
import threading


def main(argv: list[str]) -> None:
    open_files = int(argv[0])
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    from gr_argos.protocol import StreamInfo
    from gr_argos.server import ServerConfig, SpectrumServer

    settings = {key: float(value) if "." in value else int(value)
                for key, value in (arg.split("=", 1) for arg in argv[1:])}
    server = SpectrumServer(ServerConfig(host="127.0.0.1", port=0, **settings))  # type: ignore[arg-type]
    server.add_stream(StreamInfo(stream_id=0, name="spectrum", bins=64, center_freq_hz=100e6,
                                 span_hz=2e6, fps=5.0))
    server.start()
    stdin_closed = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stdin_closed.set()), daemon=True).start()
    print(server.port, flush=True)
    try:
        while not stdin_closed.wait(0.2):
            server.publish_message("status", {"stream": 0, "name": "spectrum"})
    finally:
        server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
