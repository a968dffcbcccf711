"""A small IMAP4rev1 mailbox on loopback for tests: what a bounce poller needs, and no more.

peer = ImapPeer(user="bounces", password="secret")
await peer.start()             # imaplib connects to 127.0.0.1:peer.port
peer.deliver(raw_message)      # a new UNSEEN message
peer.messages[uid].flags       # what the client set (\\Seen, \\Deleted)

Speaks CAPABILITY, LOGIN, SELECT, UID SEARCH UNSEEN|ALL, UID FETCH … (BODY.PEEK[] | RFC822),
UID STORE … +FLAGS, EXPUNGE, CLOSE, NOOP and LOGOUT; anything else gets BAD.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field

_COMMAND = re.compile(rb"^(\S+) (?:(UID) )?(\S+)(?: (.*))?$", re.IGNORECASE)
_ARGUMENT = re.compile(rb'"((?:[^"\\]|\\.)*)"|(\S+)')


@dataclass
class StoredMessage:
    uid: int
    raw: bytes
    flags: set[str] = field(default_factory=set)


class ImapPeer:
    def __init__(
        self, *, user: str, password: str, mailbox: str = "INBOX", host: str = "127.0.0.1"
    ) -> None:
        self.user = user
        self.password = password
        self.mailbox = mailbox
        self.host = host
        self.messages: dict[int, StoredMessage] = {}
        self.logins = 0
        self.failed_logins = 0
        self.fail_next_fetch = False
        self._next_uid = 1
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        assert self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    def deliver(self, raw: bytes) -> int:
        uid = self._next_uid
        self._next_uid += 1
        self.messages[uid] = StoredMessage(uid, raw)
        return uid

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._session, self.host, 0)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1] switchboard test mailbox ready\r\n")
        session = _Session(self)
        try:
            while line := await reader.readline():
                match = _COMMAND.match(line.rstrip(b"\r\n"))
                if match is None:
                    writer.write(b"* BAD unreadable command\r\n")
                    continue
                tag, uid, verb, rest = match.groups()
                arguments = [
                    (found[1] if found[1] is not None else found[2]).replace(b'\\"', b'"')
                    for found in _ARGUMENT.finditer(rest or b"")
                ]
                answer = session.run(verb.upper().decode(), bool(uid), arguments, rest or b"")
                if answer is None:  # the peer was told to drop this connection
                    return
                untagged, status, text = answer
                writer.write(untagged + tag + b" " + status + b" " + text + b"\r\n")
                await writer.drain()
                if verb.upper() == b"LOGOUT":
                    return
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


_Answer = tuple[bytes, bytes, bytes] | None


class _Session:
    """One connection's state and its commands; each returns (untagged lines, status, text)."""

    def __init__(self, peer: ImapPeer) -> None:
        self.peer = peer
        self.authenticated = False
        self.selected = False

    def run(self, command: str, uid: bool, arguments: list[bytes], rest: bytes) -> _Answer:
        done = command.encode() + b" completed"
        if command == "CAPABILITY":
            return b"* CAPABILITY IMAP4rev1\r\n", b"OK", done
        if command == "NOOP":
            return b"", b"OK", done
        if command == "LOGOUT":
            return b"* BYE logging out\r\n", b"OK", done
        if command == "LOGIN":
            return self.login(arguments)
        if not self.authenticated:
            return b"", b"NO", b"log in first"
        if command == "SELECT":
            return self.select(arguments)
        if not self.selected:
            return b"", b"NO", b"select a mailbox first"
        if uid and command == "SEARCH":
            return self.search(arguments), b"OK", done
        if uid and command == "FETCH":
            return self.fetch(arguments)
        if uid and command == "STORE":
            return self.store(arguments, rest)
        if command in ("EXPUNGE", "CLOSE"):
            messages = self.peer.messages
            for number in [u for u, m in messages.items() if "\\Deleted" in m.flags]:
                del messages[number]
            self.selected = command != "CLOSE"
            return b"", b"OK", done
        return b"", b"BAD", b"command not supported by this test mailbox"

    def store(self, arguments: list[bytes], rest: bytes) -> _Answer:
        flags = {f.decode() for f in re.findall(rb"\\\w+", rest)}
        for number in _uids(arguments[0]):
            if number in self.peer.messages:
                self.peer.messages[number].flags |= flags
        return b"", b"OK", b"STORE completed"

    def login(self, arguments: list[bytes]) -> _Answer:
        user, password = (a.decode() for a in arguments[:2])
        if (user, password) != (self.peer.user, self.peer.password):
            self.peer.failed_logins += 1
            return b"", b"NO", b"[AUTHENTICATIONFAILED] invalid credentials"
        self.peer.logins += 1
        self.authenticated = True
        return b"", b"OK", b"LOGIN completed"

    def select(self, arguments: list[bytes]) -> _Answer:
        if arguments[0].decode().strip('"') != self.peer.mailbox:
            return b"", b"NO", b"no such mailbox"
        self.selected = True
        untagged = (
            f"* {len(self.peer.messages)} EXISTS\r\n* 0 RECENT\r\n"
            "* FLAGS (\\Seen \\Deleted)\r\n"
            f"* OK [UIDNEXT {self.peer._next_uid}] next uid\r\n"
        )
        return untagged.encode(), b"OK", b"[READ-WRITE] SELECT completed"

    def search(self, arguments: list[bytes]) -> bytes:
        wanted = arguments[0].upper() if arguments else b"ALL"
        found = [
            str(m.uid)
            for m in self.peer.messages.values()
            if wanted == b"ALL" or (wanted == b"UNSEEN" and "\\Seen" not in m.flags)
        ]
        return ("* SEARCH " + " ".join(found)).rstrip().encode() + b"\r\n"

    def fetch(self, arguments: list[bytes]) -> _Answer:
        if self.peer.fail_next_fetch:
            self.peer.fail_next_fetch = False
            return None
        untagged = b""
        numbers = list(self.peer.messages)
        for number in _uids(arguments[0]):
            message = self.peer.messages.get(number)
            if message is None:
                continue
            head = (
                f"* {numbers.index(number) + 1} FETCH (UID {number} BODY[] {{{len(message.raw)}}}"
            )
            untagged += head.encode() + b"\r\n" + message.raw + b")\r\n"
            if b"PEEK" not in arguments[1].upper():
                message.flags.add("\\Seen")
        return untagged, b"OK", b"FETCH completed"


def _uids(sequence_set: bytes) -> list[int]:
    numbers: list[int] = []
    for part in sequence_set.decode().split(","):
        if ":" in part:
            low, high = part.split(":")
            numbers.extend(range(int(low), int(high) + 1))
        elif part.isdigit():
            numbers.append(int(part))
    return numbers
