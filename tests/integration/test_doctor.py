"""`videoq doctor`: each check passing and failing against the fakes; no secret in its output."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.config import Settings
from core.doctor import CheckResult, Probe, qstash, run_checks, sqlite, supabase
from core.sql import schema_sql
from tests.cli import Cli
from tests.fakes.qstash import (
    DEV_CURRENT_SIGNING_KEY,
    DEV_NEXT_SIGNING_KEY,
    DEV_TOKEN,
    FakeQStash,
)
from tests.fakes.supabase import FakeSupabase
from tests.http_support import ServeProcess, clean_env, free_port
from tests.integration.test_http_auth import Jwks
from tui.doctor import doctor

LONG_SECRET = "doctor-test-server-secret-0123456789abcdef"


def settings_for(tmp_path: Path, **values: Any) -> Settings:
    values = {"db_path": tmp_path / "videoq.db"} | values
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def checks(tmp_path: Path, **values: Any) -> dict[str, CheckResult]:
    """Every check that applies to these settings, by name."""
    results = await run_checks(settings_for(tmp_path, **values))
    by_name = {result.name: result for result in results}
    assert len(by_name) == len(results), [result.name for result in results]
    return by_name


async def one(check: Any, settings: Settings) -> CheckResult:
    async with httpx.AsyncClient(timeout=3) as http:
        return await check(Probe(settings, http))


def failing(results: dict[str, CheckResult]) -> set[str]:
    return {name for name, result in results.items() if not result.ok}


# The embedded default and the backend choice -------------------------------------------------


async def test_the_embedded_default_passes_and_says_what_it_uses(tmp_path: Path) -> None:
    results = await checks(tmp_path)
    assert failing(results) == set()
    assert results["store"].detail == f"sqlite at {tmp_path / 'videoq.db'}"
    assert results["queue"].detail.startswith("local")
    assert results["upstream"].detail.startswith("simulator")
    assert results["sign in"].skipped and results["secret key"].skipped
    assert not (tmp_path / "videoq.db").exists()  # the doctor creates nothing


async def test_a_backend_the_wiring_does_not_know_fails_naming_the_variable(
    tmp_path: Path,
) -> None:
    results = await checks(tmp_path, store="mysql", queue="kafka", upstream="runway")
    assert {"store", "queue", "upstream"} <= failing(results)
    assert results["store"].detail == "VIDEOQ_STORE must be one of sqlite, supabase, not 'mysql'"
    assert "VIDEOQ_QUEUE" in results["queue"].detail
    assert "VIDEOQ_UPSTREAM" in results["upstream"].detail


async def test_an_explicit_simulator_says_it_was_chosen(tmp_path: Path) -> None:
    results = await checks(tmp_path, upstream="simulator", t8star_api_key="t8-key")
    assert results["upstream"].ok
    assert results["upstream"].detail.startswith("simulator (VIDEOQ_UPSTREAM=simulator")


async def test_half_made_choices_fail_and_say_which_variable_is_missing(tmp_path: Path) -> None:
    results = await checks(
        tmp_path,
        supabase_url="http://127.0.0.1:9",
        qstash_current_signing_key="sig_x",
        t8star_api_key="  ",
    )
    assert {"store", "queue", "upstream"} <= failing(results)
    assert "SUPABASE_SERVICE_ROLE_KEY" in results["store"].detail
    assert "QSTASH_TOKEN" in results["queue"].detail
    assert "T8STAR_API_KEY" in results["upstream"].detail
    assert (await checks(tmp_path, t8star_api_key="sk-x"))["upstream"].detail.startswith("t8star")


# SQLite ----------------------------------------------------------------------------------------


async def test_a_database_path_under_a_regular_file_fails(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    result = await checks(tmp_path, db_path=tmp_path / "file" / "sub" / "videoq.db")
    assert not result["sqlite directory"].ok
    assert "is not a directory" in result["sqlite directory"].detail
    assert "VIDEOQ_DB" in result["sqlite directory"].fix


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody may create files in, root included (root ignores mode bits)."""
    directory = tmp_path / "read-only"
    directory.mkdir()
    if os.geteuid() != 0:
        directory.chmod(0o555)
        yield directory
        directory.chmod(0o755)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: no way to make a directory read-only")
    done = subprocess.run(["chattr", "+i", str(directory)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {done.stderr.decode().strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


async def test_a_read_only_directory_fails(tmp_path: Path, read_only_dir: Path) -> None:
    result = (await checks(tmp_path, db_path=read_only_dir / "videoq.db"))["sqlite directory"]
    assert not result.ok and f"cannot write in {read_only_dir}" in result.detail


async def test_an_existing_database_must_open_and_take_a_write_lock(tmp_path: Path) -> None:
    db_path = tmp_path / "videoq.db"
    cli = Cli.on(db_path)
    cli.ok("submit", "--prompt", "a fox")
    assert (await checks(tmp_path))["sqlite file"].detail.endswith("opens and accepts a write")
    holder = sqlite3.connect(db_path)
    holder.execute("begin immediate")
    try:
        locked = (await checks(tmp_path))["sqlite file"]
    finally:
        holder.rollback()
        holder.close()
    assert not locked.ok and "stayed locked" in locked.detail
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite " * 100)
    broken = (await checks(tmp_path, db_path=garbage))["sqlite file"]
    assert not broken.ok and "not a usable SQLite file" in broken.detail


async def test_too_little_free_space_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (await checks(tmp_path))["disk space"].ok
    monkeypatch.setattr(sqlite, "MIN_FREE_BYTES", 1 << 62)
    result = (await checks(tmp_path))["disk space"]
    assert not result.ok and result.detail.startswith("only ")


# QStash ----------------------------------------------------------------------------------------


@pytest.fixture
def fake_qstash() -> Iterator[FakeQStash]:
    with FakeQStash(time_scale=0.001) as fake:
        yield fake


def qstash_settings(url: str, **values: Any) -> dict[str, Any]:
    return {
        "qstash_token": DEV_TOKEN,
        "qstash_url": url,
        "qstash_current_signing_key": DEV_CURRENT_SIGNING_KEY,
        "qstash_next_signing_key": DEV_NEXT_SIGNING_KEY,
        "public_url": f"http://127.0.0.1:{free_port()}",  # nothing serves there
        "supabase_jwt_secret": LONG_SECRET,
        **values,
    }


async def test_qstash_with_the_right_token_and_keys_passes(
    tmp_path: Path, fake_qstash: FakeQStash
) -> None:
    results = await checks(tmp_path, **qstash_settings(fake_qstash.url))
    assert failing(results) == set()
    assert results["queue"].detail == f"qstash at {fake_qstash.url}"
    assert results["signing keys"].detail.endswith("the ones QStash signs with")
    assert results["public url"].detail.startswith("QSTASH_URL is a local dev server")
    assert results["worker self-test"].skipped  # nothing serves at VIDEOQ_PUBLIC_URL


async def test_a_dead_qstash_fails_the_token_check_and_does_not_hang(tmp_path: Path) -> None:
    results = await checks(tmp_path, **qstash_settings(f"http://127.0.0.1:{free_port()}"))
    assert not results["qstash token"].ok
    assert "did not answer (ConnectError)" in results["qstash token"].detail
    assert results["signing keys"].ok and "did not say" in results["signing keys"].detail


async def test_a_wrong_token_or_wrong_keys_fail(tmp_path: Path, fake_qstash: FakeQStash) -> None:
    wrong_token = await checks(tmp_path, **qstash_settings(fake_qstash.url, qstash_token="nope"))
    assert "refused QSTASH_TOKEN (401)" in wrong_token["qstash token"].detail
    swapped = await checks(
        tmp_path,
        **qstash_settings(
            fake_qstash.url,
            qstash_current_signing_key=DEV_NEXT_SIGNING_KEY,
            qstash_next_signing_key=DEV_CURRENT_SIGNING_KEY,
        ),
    )
    assert "QSTASH_CURRENT_SIGNING_KEY is not the key QStash has" in swapped["signing keys"].detail
    same = await checks(
        tmp_path,
        **qstash_settings(fake_qstash.url, qstash_next_signing_key=DEV_CURRENT_SIGNING_KEY),
    )
    assert "are the same key" in same["signing keys"].detail
    missing = await checks(
        tmp_path, **qstash_settings(fake_qstash.url, qstash_next_signing_key=None)
    )
    assert missing["signing keys"].detail == "QSTASH_NEXT_SIGNING_KEY not set"


@pytest.mark.parametrize(
    ("public", "ok"),
    [
        ("http://videoq.example.com", False),
        ("https://127.0.0.1:8000", False),
        ("https://10.1.2.3", False),
        ("https://localhost", False),
        ("https://videoq.example.com", True),
    ],
)
async def test_real_qstash_needs_a_public_https_url(tmp_path: Path, public: str, ok: bool) -> None:
    settings = settings_for(
        tmp_path, **qstash_settings("https://qstash.example.com", public_url=public)
    )
    result = await one(qstash.public_url, settings)
    assert result.ok is ok, result
    if not ok:
        assert "VIDEOQ_PUBLIC_URL" in result.detail and "https" in result.fix


@pytest.fixture
async def serve_on_qstash(tmp_path: Path, fake_qstash: FakeQStash) -> Any:
    port = free_port()
    env = {
        "VIDEOQ_DB": str(tmp_path / "serve.db"),
        "VIDEOQ_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "QSTASH_TOKEN": DEV_TOKEN,
        "QSTASH_URL": fake_qstash.url,
        "QSTASH_CURRENT_SIGNING_KEY": DEV_CURRENT_SIGNING_KEY,
        "QSTASH_NEXT_SIGNING_KEY": DEV_NEXT_SIGNING_KEY,
    }
    serve = ServeProcess(clean_env(**env), port, tmp_path / "serve.log")
    try:
        await serve.start()
        yield env
    finally:
        if serve.process is not None and serve.process.poll() is None:
            serve.stop()


async def test_the_self_test_delivery_is_accepted_with_the_keys_serve_uses(
    tmp_path: Path, serve_on_qstash: dict[str, str]
) -> None:
    cli = Cli.on(tmp_path / "doctor.db", **serve_on_qstash)
    done = cli.run("doctor", "--json")
    results = {check["name"]: check for check in json.loads(done.stdout)}
    assert results["worker self-test"]["ok"] and not results["worker self-test"]["skipped"]
    assert "accepted a signed delivery" in results["worker self-test"]["detail"]
    assert done.returncode == (0 if all(check["ok"] for check in results.values()) else 1)


async def test_a_wrong_signing_key_gets_the_self_test_refused(
    tmp_path: Path, serve_on_qstash: dict[str, str]
) -> None:
    wrong = serve_on_qstash | {"QSTASH_CURRENT_SIGNING_KEY": "sig_notTheKeyServeUses0000"}
    done = Cli.on(tmp_path / "doctor.db", **wrong).run("doctor")
    assert done.returncode == 1
    line = next(line for line in done.stdout.splitlines() if "worker self-test" in line)
    assert line.startswith("✗") and "refused a delivery signed with" in line
    assert "other signing keys" in done.stdout


# Supabase --------------------------------------------------------------------------------------


def project_settings(project: FakeSupabase) -> dict[str, Any]:
    return {
        "supabase_url": project.url,
        "supabase_service_role_key": project.service_role_key,
        "supabase_jwt_secret": LONG_SECRET,
    }


async def checks_after(sql: str, tmp_path: Path, project: FakeSupabase) -> dict[str, CheckResult]:
    """The checks on `project` once `sql` has run; the schema is put back afterwards."""
    project.execute_sql(sql)
    try:
        return await checks(tmp_path, **project_settings(project))
    finally:
        project.execute_sql(schema_sql())


@pytest.fixture
def project(empty_supabase: FakeSupabase) -> FakeSupabase:
    return empty_supabase


async def test_a_set_up_supabase_project_passes_and_the_write_probe_leaves_no_row(
    tmp_path: Path, project: FakeSupabase
) -> None:
    results = await checks(tmp_path, **project_settings(project))
    names = {"supabase url", "supabase key", "supabase tables", "realtime publication"}
    assert names | {"service role write"} <= set(results)
    assert failing(results) == set()
    assert results["service role write"].detail == "role service_role can write tasks"
    assert "sqlite directory" in results  # the local queue still lives in the SQLite file
    rows = httpx.get(
        f"{project.url}/rest/v1/video_tasks?select=id",
        headers={"apikey": project.service_role_key},
    ).json()
    assert rows == []


async def test_a_secret_key_passes_every_supabase_check(
    tmp_path: Path, project: FakeSupabase
) -> None:
    settings = project_settings(project) | {"supabase_service_role_key": project.secret_key}
    results = await checks(tmp_path, **settings)
    assert failing(results) == set()
    assert results["supabase key"].detail.endswith("is a secret key (sb_secret_…)")
    assert results["service role write"].detail == "role service_role can write tasks"


async def test_a_project_without_the_realtime_publication_fails_that_check(
    tmp_path: Path, project: FakeSupabase
) -> None:
    sql = "alter publication supabase_realtime drop table public.video_tasks"
    results = await checks_after(sql, tmp_path, project)
    assert failing(results) == {"realtime publication"}
    assert "videoq schema" in results["realtime publication"].fix


async def test_a_service_role_that_may_not_insert_fails_only_the_write_check(
    tmp_path: Path, project: FakeSupabase
) -> None:
    results = await checks_after(
        "revoke insert on table public.video_tasks from service_role", tmp_path, project
    )
    assert failing(results) == {"service role write"}
    detail = results["service role write"].detail
    assert detail.startswith("role service_role cannot insert into video_tasks: 42501")


async def test_a_project_without_the_schema_fails_the_schema_checks(
    tmp_path: Path, project: FakeSupabase
) -> None:
    results = await checks_after("drop function public.videoq_doctor()", tmp_path, project)
    assert failing(results) == {"supabase tables", "realtime publication", "service role write"}
    assert "missing or older" in results["supabase tables"].detail


async def test_the_anon_key_is_named_as_the_wrong_key(
    tmp_path: Path, project: FakeSupabase
) -> None:
    results = await checks(
        tmp_path, supabase_url=project.url, supabase_service_role_key=project.anon_key
    )
    assert "role 'anon', not service_role" in results["supabase key"].detail
    assert "refused SUPABASE_SERVICE_ROLE_KEY" in results["supabase tables"].detail


@pytest.mark.parametrize(
    ("key", "verdict"),
    [
        ("sb_secret_abcdefghijklmnop", "is a secret key"),
        ("sb_publishable_abcdefghijklmnop", "is a publishable key"),
        ("service-role", "neither a legacy JWT"),
        ("eyJnot-a-jwt", "starts like a JWT but is not one"),
    ],
)
async def test_key_formats(tmp_path: Path, key: str, verdict: str) -> None:
    settings = settings_for(
        tmp_path, supabase_url="https://ref.supabase.co", supabase_service_role_key=key
    )
    result = await one(supabase.supabase_key, settings)
    assert verdict in result.detail and result.ok is verdict.startswith("is a secret")


async def test_an_unreachable_project_and_a_plain_http_url_fail(tmp_path: Path) -> None:
    dead = await checks(
        tmp_path,
        supabase_url=f"http://127.0.0.1:{free_port()}",
        supabase_service_role_key="sb_secret_x",
    )
    assert "did not answer" in dead["supabase tables"].detail
    http = settings_for(
        tmp_path, supabase_url="http://ref.supabase.co", supabase_service_role_key="k"
    )
    assert "unencrypted" in (await one(supabase.supabase_url, http)).detail


# Sign-in and the server secret -----------------------------------------------------------------


async def test_sign_in_needs_a_jwt_secret_or_a_jwks_that_lists_keys(tmp_path: Path) -> None:
    cloud = {"qstash_token": DEV_TOKEN, "qstash_url": f"http://127.0.0.1:{free_port()}"}
    assert not (await checks(tmp_path, **cloud))["sign in"].ok
    assert (await checks(tmp_path, supabase_jwt_secret=LONG_SECRET))["sign in"].ok
    dead = await checks(tmp_path, supabase_jwks_url=f"http://127.0.0.1:{free_port()}/jwks")
    assert not dead["sign in"].ok and "did not answer" in dead["sign in"].detail
    with Jwks() as jwks:
        listed = await checks(tmp_path, supabase_url=jwks.base_url, supabase_service_role_key=None)
        jwks.failing = True
        broken = await checks(tmp_path, supabase_url=jwks.base_url)
    assert listed["sign in"].ok and "keys at" in listed["sign in"].detail
    assert not broken["sign in"].ok and "answered 500" in broken["sign in"].detail


async def test_the_server_secret_must_be_long_enough(tmp_path: Path) -> None:
    short = await checks(tmp_path, secret_key="short")
    assert not short["secret key"].ok and "at least 32 characters" in short["secret key"].detail
    assert (await checks(tmp_path, secret_key=LONG_SECRET))["secret key"].ok
    byok_off = (await checks(tmp_path, t8star_api_key="sk-x"))["secret key"]
    assert byok_off.ok and not byok_off.skipped and "refuses" in byok_off.detail


# The command: exit status, output, and no secret in it ----------------------------------------

CANARIES = {
    "T8STAR_API_KEY": "sk-CANARY-t8star-0001",
    "QSTASH_TOKEN": "qstash-CANARY-token-0002",
    "QSTASH_CURRENT_SIGNING_KEY": "sig_CANARY_current_0003",
    "QSTASH_NEXT_SIGNING_KEY": "sig_CANARY_next_0004",
    "SUPABASE_JWT_SECRET": "jwt-CANARY-secret-0005-with-enough-length",
    "VIDEOQ_SECRET_KEY": "vsk-CANARY-0006",
}


def assert_no_secret(done: subprocess.CompletedProcess[str], *secrets: str) -> None:
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    for secret in secrets:
        assert secret not in output, f"{secret!r} leaked:\n{output}"
        assert secret[-12:] not in output, f"the end of {secret!r} leaked:\n{output}"


def test_the_command_exits_0_on_a_clean_setup_and_prints_one_line_per_check(
    tmp_path: Path,
) -> None:
    done = Cli.on(tmp_path / "videoq.db", NO_COLOR="1").run("doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("✓ store") and "\x1b[" not in done.stdout
    assert lines[-1] == "8 checks, 0 failed"


def test_no_check_leaks_a_secret_when_checks_fail(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    env = CANARIES | {"QSTASH_URL": dead, "SUPABASE_URL": dead}
    env["SUPABASE_SERVICE_ROLE_KEY"] = (
        "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.CANARYsignature0007"
    )
    cli = Cli.on(tmp_path / "videoq.db", **env)
    for args in (("doctor",), ("doctor", "--json")):
        done = cli.run(*args)
        assert done.returncode == 1, done.stdout + done.stderr
        assert_no_secret(done, *(value for value in env.values() if value != dead))
    results = json.loads(done.stdout)
    assert {"qstash token", "supabase key", "supabase tables", "secret key"} <= {
        check["name"] for check in results if not check["ok"]
    }
    assert set(results[0]) == {"name", "ok", "detail", "fix", "skipped"}


def test_no_check_leaks_a_secret_when_checks_pass(tmp_path: Path) -> None:
    secrets = CANARIES | {"VIDEOQ_SECRET_KEY": "vsk-CANARY-0006-long-enough-to-encrypt-keys"}
    with FakeQStash(
        token=secrets["QSTASH_TOKEN"],
        current_signing_key=secrets["QSTASH_CURRENT_SIGNING_KEY"],
        next_signing_key=secrets["QSTASH_NEXT_SIGNING_KEY"],
    ) as fake:
        nowhere = f"http://127.0.0.1:{free_port()}"
        cli = Cli.on(
            tmp_path / "videoq.db", **secrets, QSTASH_URL=fake.url, VIDEOQ_PUBLIC_URL=nowhere
        )
        for args in (("doctor",), ("doctor", "--json")):
            done = cli.run(*args)
            assert done.returncode == 0, done.stdout + done.stderr
            assert_no_secret(done, *secrets.values())


async def test_a_service_that_accepts_but_never_answers_fails_by_timeout(tmp_path: Path) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the backlog; nothing ever reads them
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        results = await checks(tmp_path, **qstash_settings(url))
    assert "did not answer (ReadTimeout)" in results["qstash token"].detail


class Terminal(io.StringIO):
    """A captured stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_colour_unless_no_color_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(tmp_path)
    monkeypatch.delenv("NO_COLOR", raising=False)
    coloured = Terminal()
    assert doctor(settings, as_json=False, out=coloured) == 0
    assert "\x1b[32m✓\x1b[0m store" in coloured.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    plain = Terminal()
    doctor(settings, as_json=False, out=plain)
    assert "\x1b[" not in plain.getvalue() and "✓ store" in plain.getvalue()
