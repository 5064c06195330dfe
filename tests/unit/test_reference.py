"""ImageReference.parse: the distribution reference grammar, table-driven."""

from __future__ import annotations

import pytest

from supervisor.api.errors import http_status
from supervisor.exceptions import InvalidReference
from supervisor.reference import ImageReference, is_digest

pytestmark = pytest.mark.unit

D256 = "sha256:" + "0123456789abcdef" * 4
D512 = "sha512:" + "f" * 128

# text -> (registry, repository, tag, digest, canonical str)
VALID = [
    # Docker Hub short names get library/ and stay short in str()
    ("nginx", ("docker.io", "library/nginx", None, None, "nginx")),
    ("nginx:1.25", ("docker.io", "library/nginx", "1.25", None, "nginx:1.25")),
    ("library/nginx", ("docker.io", "library/nginx", None, None, "nginx")),
    ("user/app:v2", ("docker.io", "user/app", "v2", None, "user/app:v2")),
    ("docker.io/nginx", ("docker.io", "library/nginx", None, None, "nginx")),
    ("index.docker.io/library/nginx:1", ("docker.io", "library/nginx", "1", None, "nginx:1")),
    ("registry-1.docker.io/x/y", ("docker.io", "x/y", None, None, "x/y")),
    # the first component is a host only with '.', ':' or localhost
    ("localhost/app", ("localhost", "app", None, None, "localhost/app")),
    ("localhost:5000/app:1", ("localhost:5000", "app", "1", None, "localhost:5000/app:1")),
    ("localhost:5000", ("docker.io", "library/localhost", "5000", None, "localhost:5000")),
    ("foo:5000", ("docker.io", "library/foo", "5000", None, "foo:5000")),
    ("my_team/app", ("docker.io", "my_team/app", None, None, "my_team/app")),
    (
        "127.0.0.1:5000/stacksup/fakeapp:1.0.0",
        ("127.0.0.1:5000", "stacksup/fakeapp", "1.0.0", None,
         "127.0.0.1:5000/stacksup/fakeapp:1.0.0"),
    ),
    ("ghcr.io/org/app", ("ghcr.io", "org/app", None, None, "ghcr.io/org/app")),
    ("my.reg/a/b/c:tag", ("my.reg", "a/b/c", "tag", None, "my.reg/a/b/c:tag")),
    ("[::1]:5000/app", ("[::1]:5000", "app", None, None, "[::1]:5000/app")),
    ("my-reg.io/a-b/c.d/e__f", ("my-reg.io", "a-b/c.d/e__f", None, None, "my-reg.io/a-b/c.d/e__f")),
    # tags: word characters, dots, dashes, up to 128
    ("app:1.0.0-rc.1", ("docker.io", "library/app", "1.0.0-rc.1", None, "app:1.0.0-rc.1")),
    ("app:_x", ("docker.io", "library/app", "_x", None, "app:_x")),
    ("app:" + "t" * 128, ("docker.io", "library/app", "t" * 128, None, "app:" + "t" * 128)),
    # digests, with or without a tag
    (f"reg:5000/app@{D256}", ("reg:5000", "app", None, D256, f"reg:5000/app@{D256}")),
    (f"app:1.0@{D256}", ("docker.io", "library/app", "1.0", D256, f"app:1.0@{D256}")),
    (f"reg.io/app:v1@{D512}", ("reg.io", "app", "v1", D512, f"reg.io/app:v1@{D512}")),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[t[:40] for t, _ in VALID])
def test_parse_valid(text: str, expected: tuple[str, str, str | None, str | None, str]) -> None:
    ref = ImageReference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest, str(ref)) == expected
    # str() is canonical: parsing it again gives the same value
    assert ImageReference.parse(str(ref)) == ref
    assert ref.pinned is (ref.digest is not None)


# text -> a fragment the message must contain (it says what is wrong)
INVALID = [
    ("", "is empty or too long"),
    ("a" * 400, "is empty or too long"),
    (" nginx", "contains whitespace"),
    ("ngi nx", "contains whitespace"),
    ("nginx\n", "contains whitespace"),
    ("Nginx", "must be lowercase"),
    ("APP/x", "must be lowercase"),
    ("a//b", "repository 'a//b'"),
    ("-app", "must be lowercase components"),
    ("app_", "must be lowercase components"),
    ("a___b", "must be lowercase components"),
    ("reg.io/", "repository ''"),
    ("app:", "'' is not a valid tag"),
    ("app:-bad", "'-bad' is not a valid tag"),
    ("app:1.0+build", "'1.0+build' is not a valid tag"),
    ("app:" + "t" * 129, "is not a valid tag"),
    ("app@", "'' is not a digest"),
    ("app@sha256:abc", "'sha256:abc' is not a digest"),
    ("app@md5:" + "a" * 32, "is not a digest"),
    ("app@sha256:" + "A" * 64, "is not a digest"),  # hex must be lower-case
    (f"reg.io/a@{D256}:tag", "is not a digest"),
    ("bad..host/app", "'bad..host' is not a host"),
    ("reg.io:port/app", "'reg.io:port' is not a host"),
    ("a.b-c_d/e", "'a.b-c_d' is not a host"),
    ("app:tàg", "is not a valid tag"),  # tags are ASCII only
    ("app:\u0661", "is not a valid tag"),  # an Arabic-Indic digit
]  # fmt: skip


@pytest.mark.parametrize(("text", "reason"), INVALID)
def test_parse_invalid_says_why(text: str, reason: str) -> None:
    with pytest.raises(InvalidReference) as refused:
        ImageReference.parse(text)
    assert reason in refused.value.message
    assert refused.value.error_key == "invalid_reference"
    # A reference comes from the stack or a release manifest, never from the caller:
    # answered as an upstream failure, like the rest of the registry family.
    assert http_status(refused.value) == 502


def test_with_digest_keeps_the_tag_and_by_digest_drops_it() -> None:
    ref = ImageReference.parse("127.0.0.1:5000/stacksup/fakeapp:1.1.0")
    pinned = ref.with_digest(D256)
    assert str(pinned) == f"127.0.0.1:5000/stacksup/fakeapp:1.1.0@{D256}"
    assert pinned.by_digest() == f"127.0.0.1:5000/stacksup/fakeapp@{D256}"
    assert ImageReference.parse("nginx:1").with_digest(D256).by_digest() == f"nginx@{D256}"
    assert ImageReference.parse("user/app").with_digest(D512).by_digest() == f"user/app@{D512}"
    assert ref.digest is None  # frozen: with_digest returned a new value


def test_by_digest_and_with_digest_refuse_what_is_not_pinned() -> None:
    ref = ImageReference.parse("ghcr.io/org/app:1")
    with pytest.raises(InvalidReference, match=r"ghcr\.io/org/app:1 is not pinned to a digest"):
        ref.by_digest()
    with pytest.raises(InvalidReference, match="'latest' is not a digest"):
        ref.with_digest("latest")


def test_with_tag_unpins() -> None:
    pinned = ImageReference.parse(f"ghcr.io/org/app:1@{D256}")
    other = pinned.with_tag("2")
    assert (other.tag, other.digest, str(other)) == ("2", None, "ghcr.io/org/app:2")
    with pytest.raises(InvalidReference, match="'-x' is not a valid tag"):
        pinned.with_tag("-x")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(D256, True), (D512, True), ("sha256:" + "a" * 63, False), ("sha256:" + "G" * 64, False),
     ("1.0.0", False), ("", False)],
)  # fmt: skip
def test_is_digest(value: str, expected: bool) -> None:
    assert is_digest(value) is expected
