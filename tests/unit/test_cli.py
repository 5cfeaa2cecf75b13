"""The command-line client's own logic: batch files (JSONL and CSV) become job bodies with the
command line's defaults or a clear error, the base URL and key come from flags, the
environment or local.json, in that order, and the progress bar draws what it is told."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tollgate_local.cli import (
    CliError,
    ProgressBar,
    build_parser,
    read_batch_file,
    resolve_target,
    stack_names,
)

DEFAULTS = {"model": "mock/image", "size": "256x256", "quality": None}


def test_a_jsonl_file_becomes_job_bodies_with_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    lines = [
        '{"prompt": "a fox", "name": "fox/1"}',
        "",
        "# a comment",
        '{"prompt": "a whale", "size": "512x512", "n": 2}',
    ]
    path.write_text("\n".join(lines) + "\n")
    items = read_batch_file(path, DEFAULTS)
    assert [(i.line, i.name, i.body) for i in items] == [
        (1, "fox-1", {"model": "mock/image", "size": "256x256", "prompt": "a fox"}),
        (4, "0002", {"model": "mock/image", "size": "512x512", "prompt": "a whale", "n": 2}),
    ]


def test_a_csv_file_becomes_job_bodies_with_typed_columns(tmp_path: Path) -> None:
    path = tmp_path / "jobs.csv"
    path.write_text(
        'prompt,name,n,context,quality\n"a fox, in snow",fox,2,"{""sku"": 1}",\na whale,,,,hd\n',
        encoding="utf-8",
    )
    items = read_batch_file(path, DEFAULTS)
    assert items[0].body == {
        "model": "mock/image",
        "size": "256x256",
        "prompt": "a fox, in snow",
        "n": 2,
        "context": {"sku": 1},
    }
    assert (items[0].name, items[0].line) == ("fox", 2)
    assert items[1].body["quality"] == "hd"
    assert items[1].name == "0002"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.jsonl", '{"prompt": "x", "colour": "red"}\n', "line 1: unknown fields colour"),
        ("a.jsonl", '{"prompt": "x"}\nnot json\n', "line 2: not JSON"),
        ("a.jsonl", '{"size": "256x256"}\n', "line 1: a prompt is required"),
        ("a.jsonl", "\n\n", "no jobs"),
        ("a.csv", "name,size\nx,256x256\n", "prompt column"),
        ("a.csv", "prompt,n\nx,two\n", "line 2: n must be a whole number"),
    ],
)
def test_a_bad_batch_file_is_refused_with_the_line(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CliError, match=message):
        read_batch_file(path, DEFAULTS)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="No such file"):
        read_batch_file(tmp_path / "nope.jsonl", DEFAULTS)


def test_the_target_comes_from_flags_then_the_environment_then_local_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "local.json").write_text(
        json.dumps({"base_url": "http://127.0.0.1:4000", "admin_key": "tg_admin", "demo_key": "tg_demo"})
    )
    monkeypatch.delenv("TOLLGATE_BASE_URL", raising=False)
    monkeypatch.delenv("TOLLGATE_API_KEY", raising=False)
    parser = build_parser()
    args = parser.parse_args(["--state-dir", str(tmp_path), "keys", "list"])
    assert resolve_target(args, admin=False).key == "tg_demo"
    assert resolve_target(args, admin=True).key == "tg_admin"
    assert resolve_target(args, admin=True).base_url == "http://127.0.0.1:4000"
    monkeypatch.setenv("TOLLGATE_API_KEY", "tg_env")
    monkeypatch.setenv("TOLLGATE_BASE_URL", "http://example.test/")
    assert resolve_target(args, admin=True) == resolve_target(args, admin=False)
    assert resolve_target(args, admin=True).key == "tg_env"
    assert resolve_target(args, admin=True).base_url == "http://example.test"
    flagged = parser.parse_args(["--key", "tg_flag", "--base-url", "http://x.test", "keys", "list"])
    assert (resolve_target(flagged, admin=True).key, resolve_target(flagged, admin=True).base_url) == (
        "tg_flag",
        "http://x.test",
    )


def test_the_progress_bar_draws_in_place_on_a_terminal_and_by_line_otherwise() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    bar = ProgressBar(4, terminal, width=8)
    bar.update(0, 0, 0)
    bar.update(2, 1, 1)
    bar.update(2, 1, 1)  # unchanged: not drawn again
    bar.close()
    assert terminal.getvalue() == "\r[--------] 0/4 done\r[####----] 2/4 done, 1 running, 1 failed\n"
    plain = io.StringIO()
    line_bar = ProgressBar(2, plain, width=4)
    line_bar.update(1, 0, 0)
    line_bar.update(2, 0, 0)
    line_bar.close()
    assert plain.getvalue() == "[##--] 1/2 done\n[####] 2/2 done\n"


def test_the_bootstrap_names_come_from_the_template() -> None:
    assert stack_names("prod") == ("tollgate/prod/key-pepper", "/tollgate/prod/admin-key")
