"""The presenter's token: found the same way by every program, kept off command lines."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from protocol import tokens
from protocol.errors import CommandError


def test_the_default_token_is_made_once_private_and_shared(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MNIST_LIVE_CACHE", str(tmp_path))
    monkeypatch.delenv(tokens.TOKEN_ENV, raising=False)
    first, where = tokens.presenter_token()
    assert Path(where) == tmp_path / "presenter-token" and tokens.TOKEN.fullmatch(first)
    assert stat.S_IMODE((tmp_path / "presenter-token").stat().st_mode) == 0o600
    assert tokens.presenter_token()[0] == first, "every program of this user finds the same"
    monkeypatch.setenv(tokens.TOKEN_ENV, "from-the-environment")
    assert tokens.presenter_token() == ("from-the-environment", f"${tokens.TOKEN_ENV}")
    explicit = tmp_path / "mine"
    explicit.write_text("a-token-in-a-file\n")
    assert tokens.presenter_token(explicit) == ("a-token-in-a-file", str(explicit))


@pytest.mark.parametrize("content", ["short", "has spaces in it", "x" * 200])
def test_a_bad_token_is_one_line(tmp_path, content) -> None:
    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(CommandError, match="8-128 letters"):
        tokens.presenter_token(path)
    with pytest.raises(CommandError, match="cannot read"):
        tokens.presenter_token(tmp_path / "missing")


def test_tokens_compare_whole() -> None:
    assert tokens.same("abcdefgh", "abcdefgh")
    assert not tokens.same("abcdefgX", "abcdefgh") and not tokens.same(None, "abcdefgh")
    assert not tokens.same("abcdefgh-longer", "abcdefgh")
