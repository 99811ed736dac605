"""The documentation site: it builds with `mkdocs build --strict` (a broken link,
an unknown anchor or a page left out of the nav fails it), every page is in the
nav, the configuration reference is what the validator generates, every
channel page names every option its channel accepts, and the README's links
lead to pages that exist."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator, List

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MKDOCS_YML = ROOT / "mkdocs.yml"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_config_reference", DOCS / "gen_config_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _MkdocsLoader(yaml.SafeLoader):
    """mkdocs.yml with its `!relative` tags (their values do not matter here)."""


_MkdocsLoader.add_constructor("!relative", lambda loader, node: loader.construct_scalar(node))


def _nav_pages(nav: Any) -> Iterator[str]:
    if isinstance(nav, str):
        yield nav
    elif isinstance(nav, list):
        for item in nav:
            yield from _nav_pages(item)
    elif isinstance(nav, dict):
        for value in nav.values():
            yield from _nav_pages(value)


def _pages() -> List[str]:
    return sorted(str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md"))


def test_the_site_builds_strictly_without_a_warning(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        reason = "mkdocs and mkdocs-material are not installed (the `docs` extra; tests/run.py installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(MKDOCS_YML),
         "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    built = tmp_path / "site"
    for page in _pages():
        folder = page[: -len("index.md")] if page.endswith("index.md") else page[: -len(".md")] + "/"
        html = built / folder / "index.html"
        assert html.is_file(), f"{page} was not built"
    # The included files really arrived (a snippet that finds nothing would leave the page empty).
    assert "Threat model" in (built / "security" / "index.html").read_text(encoding="utf-8")
    assert "Kill-to-alert" in (built / "benchmark-results" / "index.html").read_text(encoding="utf-8")


def test_every_docs_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    config = yaml.load(MKDOCS_YML.read_text(encoding="utf-8"), Loader=_MkdocsLoader)
    in_nav = sorted(_nav_pages(config["nav"]))
    assert len(in_nav) == len(set(in_nav)), "a page is in the nav twice"
    assert sorted(set(in_nav)) == _pages()


def test_the_config_reference_is_what_the_validator_generates() -> None:
    generator = _generator()
    expected = generator.generate()
    assert (DOCS / "config-reference.md").read_text(encoding="utf-8") == expected, (
        "docs/config-reference.md is stale: run python3 docs/gen_config_reference.py")


def test_every_key_the_validator_knows_is_in_the_reference() -> None:
    generator = _generator()
    keys = generator.validator_keys()
    page = (DOCS / "config-reference.md").read_text(encoding="utf-8")
    # The probe found real blocks: the top level, each nested block, each channel type, a run's arguments.
    assert {"stall_timeout", "channels", "inline_channels", "healthchecks"} <= set(keys[""])
    types = {path.split(".", 1)[1] for path in keys if path.startswith("channels.")}
    assert {"bark", "slack", "console"} <= types
    missing = [f"{where}: {key}" for where, names in keys.items() for key in names if f"`{key}`" not in page]
    assert not missing, missing


def test_the_generator_refuses_a_key_it_does_not_describe() -> None:
    generator = _generator()
    keys = generator.validator_keys()
    keys[""] = [*keys[""], "brand_new_key"]
    keys["message_limits"] = [*keys["message_limits"], "per_host_per_minute"]
    assert generator.problems(keys) == ["brand_new_key", "message_limits.per_host_per_minute"]


def test_every_channel_type_has_a_page_naming_each_of_its_options() -> None:
    from sentinel.channels import REGISTRY

    missing = []
    for type_name, cls in sorted(REGISTRY.items()):
        page = DOCS / "channels" / f"{type_name}.md"
        if not page.is_file():
            missing.append(f"{type_name}: no page")
            continue
        text = page.read_text(encoding="utf-8")
        missing += [f"{type_name}.{option}" for option in cls.OPTIONS
                    if f"{option}:" not in text and f"`{option}`" not in text]
    assert len(REGISTRY) >= 14
    assert not missing, missing


def test_the_readme_links_to_pages_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link and not link.startswith("mailto:")]
    assert local, "the README links to no docs page"
    broken = [link for link in local if not (ROOT / link).exists()]
    assert not broken, broken


def test_the_readme_stays_short() -> None:
    # The manual lives in docs/; the README is what it is, install, the tour, the service, where next.
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines: move detail to a docs/ page"
