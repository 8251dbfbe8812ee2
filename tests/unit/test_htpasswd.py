"""htpasswd: bcrypt only, cost >= 10, passwords <= 72 bytes (F22), safe user names."""

from __future__ import annotations

import bcrypt
import pytest

from fabfile import htpasswd
from fabfile.errors import InputError
from fabfile.htpasswd import Htpasswd
from fabfile.redact import redact


@pytest.fixture(scope="module")
def table() -> Htpasswd:
    """Two users at cost 10 (the registry's minimum), hashed once for the module."""
    return Htpasswd().with_user("alice", "alice-pass", 10).with_user("bob", "bob-pass", 10)


def test_F22_entries_are_bcrypt_cost_10(table):
    assert table.users == ("alice", "bob")
    for _, hashed in table.entries:
        assert hashed.startswith("$2b$10$") and len(hashed) == 60
        assert htpasswd.BCRYPT.match(hashed)
    assert table.not_bcrypt() == () and table.weak() == ()


def test_F22_verify(table):
    assert table.verify("alice", "alice-pass")
    assert not table.verify("alice", "bob-pass")
    assert not table.verify("carol", "alice-pass")


def test_F22_render_and_parse_round_trip(table):
    text = table.render()
    assert text.count(b"\n") == 2 and text.startswith(b"alice:$2b$10$")
    again = Htpasswd.parse(text.decode() + "\n# a comment\n\n")
    assert again == table


def test_with_user_updates_in_place_and_appends_new_users(table):
    updated = table.with_user("alice", "new-pass", 10)
    assert updated.users == ("alice", "bob")  # order kept
    assert updated.verify("alice", "new-pass") and not updated.verify("alice", "alice-pass")
    assert dict(updated.entries)["bob"] == dict(table.entries)["bob"]
    assert table.verify("alice", "alice-pass")  # immutable: the original is unchanged
    assert "carol" not in table
    assert table.without("alice").users == ("bob",)
    assert table.without("nobody") == table


@pytest.mark.parametrize("password", ["x" * 73, "é" * 37, "🔑" * 19])
def test_F22_password_longer_than_72_bytes_refused(password):
    assert len(password.encode()) > 72
    with pytest.raises(InputError, match=rf"password is {len(password.encode())} bytes; bcrypt uses only the first 72"):
        Htpasswd().with_user("alice", password, 10)


def test_F22_password_of_exactly_72_bytes_accepted():
    password = "é" * 36  # 72 bytes, 36 characters
    table = Htpasswd().with_user("alice", password, 10)
    assert table.verify("alice", password)


def test_F22_empty_password_refused():
    with pytest.raises(InputError, match="password is empty"):
        htpasswd.check_password("")


def test_F22_cost_below_10_refused():
    with pytest.raises(InputError, match="bcrypt cost 9: at least 10 is required"):
        htpasswd.hash_password("pw", 9)


@pytest.mark.parametrize("user", ["al:ice", "al ice", "", "a" * 65, "ålice", "al\nice"])
def test_user_names_that_would_break_the_file_are_refused(user):
    with pytest.raises(InputError, match=r"user name .*no ':' or spaces"):
        Htpasswd().with_user(user, "pw", 10)


@pytest.mark.parametrize("user", ["alice", "ci-bot", "a.b_c@example.com", "a" * 64])
def test_user_names_accepted(user):
    assert htpasswd.check_user(user) == user


def test_F22_not_bcrypt_flags_lines_the_registry_would_ignore():
    weak = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    text = "\n".join([
        "sha:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
        "md5:$apr1$abcdefgh$0123456789abcdefghijkl",
        "crypt:abJnggxhB/yWI",
        "plain:hunter2-plaintext",
        f"weak:{weak}",
        "good:$2y$10$" + "a" * 53,
    ])
    table = Htpasswd.parse(text)
    assert table.not_bcrypt() == ("sha", "md5", "crypt", "plain")
    assert table.weak() == ("weak",)
    assert not table.verify("plain", "hunter2-plaintext")  # the registry would not accept it either


def test_hashes_are_registered_as_secrets(table):
    hashed = dict(table.entries)["alice"]
    assert redact(f"line {hashed} end") == "line *** end"
