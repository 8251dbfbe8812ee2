"""The registry's htpasswd file: bcrypt entries only (the registry ignores every other hash).

Pure: parse text, add/remove users, render text. Passwords are hashed here
and never stored, printed or passed on a command line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from .errors import InputError
from .redact import register

BCRYPT = re.compile(r"^\$2[abyx]?\$(\d\d)\$[./A-Za-z0-9]{53}$")
USER = re.compile(r"[A-Za-z0-9._@-]{1,64}")  # fullmatch: '$' would accept a trailing newline (review L5)
HEALTH_USER = "registry-tls-health"


def check_user(name: str) -> str:
    if not USER.fullmatch(name) or name.startswith("-"):
        raise InputError(f"user name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-' (no ':' or spaces)")
    return name


def check_operator_user(name: str) -> str:
    """A user name an operator may add (users.add): not the tool's own health user."""
    refuse_reserved(check_user(name))
    return name


def refuse_reserved(name: str) -> None:
    """users.add/remove: the health user is the tool's own (a deploy would add it back)."""
    if name == HEALTH_USER:
        raise InputError(f"user name {name!r} is reserved: registry-tls logs in with it to check the registry "
                         "(its password is pki/health.password; a deploy keeps it)")


def check_password(password: str) -> str:
    size = len(password.encode("utf-8"))
    if size == 0:
        raise InputError("password is empty")
    if size > 72:
        raise InputError(f"password is {size} bytes; bcrypt uses only the first 72, give 72 or fewer")
    return password


def hash_password(password: str, cost: int) -> str:
    check_password(password)
    register(password)
    if cost < 10:
        raise InputError(f"bcrypt cost {cost}: at least 10 is required")
    hashed = bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=cost)).decode("ascii")
    register(hashed)
    return hashed


@dataclass(frozen=True)
class Htpasswd:
    """Ordered ``user:hash`` entries."""

    entries: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Htpasswd:
        entries = []
        for line in text.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if sep:
                entries.append((user.strip(), hashed.strip()))
                register(hashed.strip())
        return cls(tuple(entries))

    @classmethod
    def load(cls, data: bytes, path: Path) -> Htpasswd:
        """The local htpasswd, validated: UTF-8 text of ``user:hash`` lines, each user once."""
        recover = "fix or delete it (deleted, the next deploy adopts the registry host's users)"
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{path}: not an htpasswd file (not UTF-8 text); {recover}") from None
        seen: set[str] = set()
        for number, line in enumerate(text.split("\n"), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if not sep or not user.strip() or not hashed.strip() or any(ord(ch) < 32 or ord(ch) == 127 for ch in line):
                raise InputError(f"{path}:{number}: not a 'user:hash' line; {recover}")
            if user.strip() in seen:
                raise InputError(f"{path}:{number}: user {user.strip()!r} appears twice; {recover}")
            seen.add(user.strip())
        return cls.parse(text)

    def render(self) -> bytes:
        return "".join(f"{u}:{h}\n" for u, h in self.entries).encode("ascii")

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(u for u, _ in self.entries)

    def __contains__(self, user: str) -> bool:
        return user in self.users

    def with_user(self, user: str, password: str, cost: int) -> Htpasswd:
        check_user(user)
        hashed = hash_password(password, cost)
        others = tuple(e for e in self.entries if e[0] != user)
        if user in self:
            return Htpasswd(tuple((u, hashed if u == user else h) for u, h in self.entries))
        return Htpasswd((*others, (user, hashed)))

    def with_hash(self, user: str, hashed: str) -> Htpasswd:
        """``user`` set to an already computed hash (idempotent: applying it twice changes nothing)."""
        if user in self:
            return Htpasswd(tuple((u, hashed if u == user else h) for u, h in self.entries))
        return Htpasswd((*self.entries, (user, hashed)))

    def without(self, user: str) -> Htpasswd:
        return Htpasswd(tuple(e for e in self.entries if e[0] != user))

    def not_bcrypt(self) -> tuple[str, ...]:
        """Users whose line the registry silently ignores (not a bcrypt hash)."""
        return tuple(u for u, h in self.entries if not BCRYPT.match(h))

    def weak(self) -> tuple[str, ...]:
        """Users hashed with a bcrypt cost below 10."""
        return tuple(u for u, h in self.entries if (m := BCRYPT.match(h)) and int(m.group(1)) < 10)

    def verify(self, user: str, password: str) -> bool:
        for u, h in self.entries:
            if u == user and BCRYPT.match(h):
                return bcrypt.checkpw(password.encode("utf-8"), h.encode("ascii"))
        return False
