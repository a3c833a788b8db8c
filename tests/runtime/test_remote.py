"""The remote transport against a real OpenSSH server on loopback: a bundle is copied once (by the
sha256 of its manifest), completely or not at all, and failures are RemoteErrors saying what failed."""
from __future__ import annotations

import hashlib
import os

import pytest

from mmedge.errors import RemoteError
from mmedge.runtime.remote import SshTarget, bundle_id, copy_inputs, ensure_bundle, remove_folder

from ..sshd_server import start_sshd


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    yield from start_sshd(tmp_path_factory.mktemp("sshd"))


@pytest.fixture(scope="module")
def target(sshd):
    return SshTarget.parse(sshd.url, identity=str(sshd.identity), options=sshd.options)


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_bundle_is_copied_once(target, sshd, fp32_bundle):
    cache = str(sshd.home / "bundles")
    where, copied = ensure_bundle(target, fp32_bundle, cache=cache)
    assert copied and where.endswith(bundle_id(fp32_bundle))
    remote = sshd.home / "bundles" / bundle_id(fp32_bundle)
    assert sorted(p.name for p in remote.iterdir()) == sorted(p.name for p in fp32_bundle.iterdir())
    assert all(_sha(remote / p.name) == _sha(p) for p in fp32_bundle.iterdir() if p.is_file())
    again, copied_again = ensure_bundle(target, fp32_bundle, cache=cache)
    assert (again, copied_again) == (where, False)


def test_an_interrupted_copy_is_not_taken_for_a_bundle(target, sshd, fp32_bundle, tmp_path):
    """A leftover `.partial` folder (a copy cut off) is replaced, never used."""
    cache = sshd.home / "cut"
    partial = cache / f"{bundle_id(fp32_bundle)}.partial"
    partial.mkdir(parents=True)
    (partial / "manifest.json").write_text("{half")
    where, copied = ensure_bundle(target, fp32_bundle, cache=str(cache))
    assert copied and not partial.exists()
    assert _sha(cache / bundle_id(fp32_bundle) / "manifest.json") == _sha(fp32_bundle / "manifest.json")


def test_inputs_are_copied_and_removed(target, tmp_path):
    files = [tmp_path / "a.png", tmp_path / "b b.txt"]
    files[0].write_bytes(b"\x89PNG fake")
    files[1].write_text("hello")
    folder, remote = copy_inputs(target, files)
    assert [open(r, "rb").read() for r in remote] == [f.read_bytes() for f in files]
    remove_folder(target, folder)
    assert not any(os.path.exists(r) for r in remote)


@pytest.mark.parametrize("url, message", [
    ("http://host", "expected ssh://[user@]host[:port]"),
    ("ssh://", "expected ssh://[user@]host[:port]"),
    ("ssh://pi@host:99999", "the port must be a number in 1..65535"),
    ("ssh://pi@host/path", "expected ssh://[user@]host[:port]"),
])
def test_bad_remote_urls(url, message):
    with pytest.raises(RemoteError) as e:
        SshTarget.parse(url)
    assert message in str(e.value)


def test_an_unreachable_device_is_a_remote_error(sshd, fp32_bundle):
    closed = SshTarget.parse(sshd.url.rsplit(":", 1)[0] + ":1", identity=str(sshd.identity),
                             options=sshd.options + ("ConnectTimeout=5",))
    with pytest.raises(RemoteError, match="failed .exit 255.*(refused|Connection)"):
        ensure_bundle(closed, fp32_bundle, cache=str(sshd.home / "x"))
    wrong_key = SshTarget.parse(sshd.url, identity=str(sshd.identity) + ".pub", options=sshd.options)
    with pytest.raises(RemoteError, match="failed"):
        ensure_bundle(wrong_key, fp32_bundle, cache=str(sshd.home / "y"))
