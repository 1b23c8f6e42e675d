"""`polyjepa list` answers from its cache file without importing a plugin (or torch) while
nothing changed, and imports the plugins again as soon as something did."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from polyjepa import listing, registry

LIST_AND_REPORT_TORCH = ("import sys; from polyjepa.cli import main; main(['list']); "
                         "print('torch imported:', 'torch' in sys.modules, file=sys.stderr)")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(listing.CACHE_ENV, str(folder))
    return folder


def _list(cache_dir) -> tuple[str, str]:
    env = {**os.environ, listing.CACHE_ENV: str(cache_dir)}
    proc = subprocess.run([sys.executable, "-c", LIST_AND_REPORT_TORCH], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, proc.stderr


def test_second_list_reads_the_cache_without_importing_torch(cache):
    first, first_err = _list(cache)
    second, second_err = _list(cache)
    assert "torch imported: True" in first_err  # the plugins were imported once
    assert "torch imported: False" in second_err
    assert second == first
    assert "tabular.feature" in second and "transformer" in second


def test_cached_listing_is_used_while_the_fingerprint_holds(cache, monkeypatch):
    fresh = listing.installed()
    assert listing.cache_file().exists()

    def no_import():
        raise AssertionError("plugins imported although nothing changed")

    monkeypatch.setattr(listing, "_from_registry", no_import)
    assert listing.installed() == fresh
    with pytest.raises(AssertionError, match="nothing changed"):
        listing.installed(refresh=True)


def test_a_new_distribution_changes_the_listing(cache, site):
    before = listing.installed()
    site.install_extra()
    site.activate()
    after = listing.installed()
    assert ("tabular.mlp_tokenizer", "tokenizer", "polyjepa-extra") in after.components
    assert ("tabular.mlp_tokenizer", "tokenizer", "polyjepa-extra") not in before.components


def test_editing_a_plugin_file_changes_the_fingerprint(cache, site):
    site.install_extra()
    site.activate()
    key = listing.fingerprint()
    assert listing.fingerprint() == key
    module = site.root / "polyjepa_extra.py"
    module.write_text(module.read_text() + "\n# edited\n")
    assert listing.fingerprint() != key


def test_plugin_environment_variables_change_the_fingerprint(cache, monkeypatch):
    key = listing.fingerprint()
    monkeypatch.setenv(registry.DISABLE_AUTOLOAD_ENV, "1")
    monkeypatch.setenv(registry.PLUGINS_ENV, "tabular")
    assert listing.fingerprint() != key
    assert [name for name, _ in listing.installed().modalities] == ["tabular"]


def test_a_listing_with_a_failed_plugin_is_not_kept(cache, site):
    site.install("polyjepa-broken", {registry.MODALITY_GROUP: {"brokenmod": "polyjepa_broken:plugin"}},
                 {"polyjepa_broken": "raise ImportError('needs libfoo')\n"})
    site.activate()
    with pytest.warns(UserWarning, match="brokenmod"):
        found = listing.installed()
    assert any("brokenmod" in f and "needs libfoo" in f for f in found.failures)
    assert not listing.cache_file().exists()


def test_an_unwritable_cache_folder_is_not_an_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(listing.CACHE_ENV, str(blocker / "cache"))
    assert ("tabular", "polyjepa") in listing.installed().modalities


def test_a_corrupt_cache_file_is_rebuilt(cache):
    cache.mkdir()
    listing.cache_file().write_text("{not json")
    found = listing.installed()
    assert ("tabular", "polyjepa") in found.modalities
    assert listing.installed() == found  # now read back from a rewritten file
