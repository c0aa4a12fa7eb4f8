"""The README's configuration table is the settings, not a copy that drifts."""

from __future__ import annotations

import itertools
import re
import runpy
import subprocess
from dataclasses import fields

import pytest
from markdown_it import MarkdownIt

from echo.app.settings import EchoSettings
from echo.server.settings import Settings, env_name

from .servers import ROOT

# A default in words ("the host name") is not a value to parse back.
ROW = re.compile(r"^\| `(\w+)` \| `(ECHO_\w+)` \| (`[^`]+`|[\w ]+) \| (.+) \|$")


def test_configuration_table_matches_settings():
    readme = (ROOT / "README.md").read_text()
    rows = {m[1]: (m[2], m[3]) for m in map(ROW.match, readme.splitlines()) if m}
    owners = {f.name: kind for kind in (Settings, EchoSettings) for f in fields(kind)}
    assert sorted(rows) == sorted(owners)
    for name, (variable, default) in rows.items():
        assert variable == env_name(name)
        if default.startswith("`"):
            kind = owners[name]
            assert kind.from_env({}, **{name: default.strip("`")}) == kind.from_env({}), name


def test_gunicorn_conf_sets_every_setting_at_its_default(monkeypatch, tmp_path):
    for f in fields(Settings):
        monkeypatch.delenv(env_name(f.name), raising=False)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert conf["websocket"] == Settings()
    assert conf["raw_env"] == Settings().to_env()
    source = (ROOT / "gunicorn.conf.py").read_text()
    for f in fields(Settings):
        assert re.search(rf"^\s+{f.name}=", source, re.M), f"{f.name} not set explicitly"


MARKDOWN = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda path: str(path.relative_to(ROOT)))
def test_markdown_renders_every_table_and_links_to_files_that_exist(path):
    """Rendered as GitHub renders it (CommonMark and tables): no table row left as text."""
    tokens = MarkdownIt("commonmark").enable("table").parse(path.read_text())
    stray_rows = [
        line
        for opening, inline in itertools.pairwise(tokens)
        if opening.type == "paragraph_open"
        for line in inline.content.splitlines()
        if line.lstrip().startswith("|")
    ]
    assert stray_rows == []
    targets = [
        child.attrs["href"]
        for token in tokens
        if token.type == "inline"
        for child in token.children or ()
        if child.type == "link_open"
    ]
    local = [target.split("#")[0] for target in targets if "://" not in target]
    missing = [target for target in local if target and not (path.parent / target).exists()]
    assert missing == []


def test_make_targets_write_their_runs_where_git_does_not_see_them():
    """A clone stays clean after `make conformance`, `make bench` and `make bench-pinned`.

    The committed summary and tables are the references the READMEs quote;
    a run of one's own must not overwrite them.
    """
    from bench.pinned import RESULTS as PINNED
    from bench.run import RESULTS as BENCH
    from conformance.run import SUMMARY

    written = [SUMMARY, BENCH, PINNED]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *map(str, written)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert sorted(ignored) == sorted(map(str, written))
