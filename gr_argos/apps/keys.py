# SPDX-License-Identifier: GPL-3.0-or-later
"""``argos-keys``: make and show the CURVE key pairs of the ZeroMQ link (publisher and gateways).

    argos-keys generate publisher --dir /etc/argos/keys
    argos-keys generate gateway-1
    argos-keys show /etc/argos/keys/publisher.key_secret gateway-1.key

``generate NAME`` writes ``NAME.key`` (the public key: give it to the other end) and
``NAME.key_secret`` (the key pair: it stays on this machine, readable by its owner only), in
ZeroMQ's certificate format (``zmq.auth.create_certificates``); it never overwrites a key.
``show`` prints each file's public key and whether it holds a secret key, and checks that a
secret key is not readable by every user. See docs/zmq.md.

Exit codes: 0 done; 1 a file could not be made or read, or a secret key is readable by every
user; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import stat
import sys
from pathlib import Path
from typing import Sequence

import zmq

from gr_argos.apps.common import EXIT_FAILURE, EXIT_OK
from gr_argos.key_files import readable_by_others
from gr_argos.zmq_curve import (
    PUBLIC_KEY_SUFFIX,
    SECRET_KEY_SUFFIX,
    ZmqKeyError,
    generate_key_pair,
    load_public_key,
)

__all__ = ["argument_parser", "main"]

PROG = "argos-keys"


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Make and show the CURVE key pairs that encrypt and authenticate the "
                    "ZeroMQ link between a publisher (zmq_sink, argos-spectrum --transport "
                    "zmq) and its gateways (argos-gateway).",
        epilog="The publisher takes its NAME.key_secret as zmq_secret_key and a directory of "
               "the gateways' NAME.key files as zmq_allowed_keys; each gateway takes its own "
               "NAME.key_secret as zmq_secret_key and the publisher's NAME.key as "
               "zmq_server_key. See docs/zmq.md.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    generate = commands.add_parser(
        "generate", help="make a key pair: NAME.key (public) and NAME.key_secret (secret)")
    generate.add_argument("name", metavar="NAME", help="file name of the pair, e.g. publisher "
                          "or gateway-1")
    generate.add_argument("--dir", type=Path, default=Path("."), metavar="DIR",
                          help="where to write them (made, mode 700, if missing; default: "
                               "the current directory)")
    show = commands.add_parser("show", help="print the public key of key files and check "
                                            "the secret ones' permissions")
    show.add_argument("files", nargs="+", type=Path, metavar="FILE",
                      help=f"NAME{PUBLIC_KEY_SUFFIX} or NAME{SECRET_KEY_SUFFIX} files")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    if args.command == "generate":
        return _generate(args.dir, args.name)
    return _show(args.files)


def _generate(directory: Path, name: str) -> int:
    try:
        public, secret = generate_key_pair(directory, name)
    except (ZmqKeyError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    key = load_public_key(str(public), "public key")
    print(f"{PROG}: made the key pair {name!r}\n"
          f"  public key  {public}  (mode 644: give it to the other end)\n"
          f"  secret key  {secret}  (mode 600: keep it on this machine)\n"
          f"  public key value: {key.decode()}\n"
          f"For a publisher: zmq_secret_key: {secret}; copy {public.name} to each gateway "
          "(its zmq_server_key).\n"
          f"For a gateway: zmq_secret_key: {secret}, zmq_server_key: the publisher's .key "
          f"file; copy {public.name} into the publisher's zmq_allowed_keys directory.")
    return EXIT_OK


def _show(files: list[Path]) -> int:
    status = EXIT_OK
    for path in files:
        try:
            public, secret = zmq.auth.load_certificate(str(path))
        except (OSError, ValueError) as exc:
            print(f"{PROG}: cannot read {path}: {exc}", file=sys.stderr)
            status = EXIT_FAILURE
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        holds = "key pair (public and secret)" if secret else "public key only"
        print(f"{path}: {holds}, mode {mode:03o}\n  public key: {public.decode()}")
        if secret and readable_by_others(str(path)):
            print(f"{PROG}: {path} holds a secret key and every user of this machine can read "
                  f"it: chmod 600 {path}", file=sys.stderr)
            status = EXIT_FAILURE
    return status


if __name__ == "__main__":
    sys.exit(main())
