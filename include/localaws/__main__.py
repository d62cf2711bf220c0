"""``python -m localaws serve [--port N] [--ready-file F]`` and ``python -m localaws bootstrap ...``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localaws", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the local AWS until SIGINT/SIGTERM")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=int(os.environ.get("LOCALAWS_PORT", 0)))
    serve.add_argument("--ready-file", type=Path, help="write {endpoint_url, pid} here once listening")
    boot = commands.add_parser("bootstrap", help="create the bake-off's bucket, queue and knowledge base")
    boot.add_argument("--endpoint-url", required=True)
    boot.add_argument("--spec", type=Path, required=True, help="JSON: bucket, queue_name, knowledge_base_name...")
    boot.add_argument("--output", type=Path, help="write the created ids as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s localaws %(levelname)s %(message)s")

    if args.command == "bootstrap":
        from localaws.bootstrap import bootstrap_from_file

        created = bootstrap_from_file(args.endpoint_url, str(args.spec))
        text = json.dumps(created, indent=2)
        if args.output:
            args.output.write_text(text)
        print(text)
        return 0

    from localaws.server import LocalAWS

    server = LocalAWS(args.host, args.port).start()
    if args.ready_file:
        tmp = args.ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"endpoint_url": server.endpoint_url, "pid": os.getpid()}))
        tmp.rename(args.ready_file)
    print(f"local AWS ready on {server.endpoint_url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
