"""The stagecoach CLI against a real HTTP control plane (emulated AWS, served in this process)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib.cli import main
from chalicelib.cli.api import Api

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plane() -> Iterator[Any]:
    """The local control plane on free ports; the environment is restored afterwards."""
    from chalicelib import bootstrap
    from chalicelib.local.control_plane import ControlPlane

    saved = dict(os.environ)
    first = ControlPlane("127.0.0.1", 0, 0)
    try:
        try:
            running = first.start(pump=True)
        except AttributeError:  # app.py's event handlers are not there yet: serve the API without the pump
            first.stop()
            running = ControlPlane("127.0.0.1", 0, 0).start(pump=False)
        try:
            yield running
        finally:
            running.stop()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        bootstrap.reset()


def cli(plane: Any, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    """Run the CLI in this process."""
    out, err = io.StringIO(), io.StringIO()
    code = main(["--url", plane.url, *argv], stdout=out, stderr=err, stdin=io.StringIO(stdin))
    return code, out.getvalue(), err.getvalue()


def run(url: str, *argv: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a process, like a person would."""
    return subprocess.run(
        [sys.executable, "-m", "chalicelib.cli", "--url", url, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def api(plane: Any) -> Api:
    return Api(plane.url)


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def create_args(name: str, clone_url: str = "https://github.com/acme/x.git", *extra: str) -> list[str]:
    return [
        "stacks",
        "create",
        "--name",
        name,
        "--repo",
        f"acme/{name}",
        "--clone-url",
        clone_url,
        "--stage",
        "dev",
        "--stage",
        "test",
        "--stage",
        "prod:approval",
        *extra,
    ]


def ensure_stack(plane: Any, name: str) -> None:
    """Create the stack unless an earlier test did."""
    if cli(plane, "stacks", "show", name, "--json")[0] != 0:
        assert cli(plane, *create_args(name))[0] == 0


def test_stack_lifecycle_through_a_subprocess(plane: Any) -> None:
    made = run(plane.url, *create_args("shop", "https://github.com/acme/shop.git", "--branch", "main", "--tag", "v*"))
    assert made.returncode == 0, made.stderr
    assert "created stack shop: dev → test → prod (approval)" in made.stdout
    secret_line = next(line for line in made.stdout.splitlines() if line.startswith("webhook secret: "))
    assert len(secret_line.split(": ", 1)[1]) >= 32
    assert f"{plane.url}/webhooks/github/shop" in made.stdout

    listed = run(plane.url, "stacks", "list")
    assert listed.returncode == 0
    assert any(line.split()[:4] == ["shop", "acme/shop", "dev", "IDLE"] for line in listed.stdout.splitlines())
    as_json = json.loads(run(plane.url, "stacks", "list", "--json").stdout)
    assert "shop" in [s["id"] for s in as_json["stacks"]]

    shown = run(plane.url, "stacks", "show", "shop")
    assert shown.returncode == 0, shown.stderr
    rows = [line.split() for line in shown.stdout.splitlines() if line[:1].isdigit()]
    assert [r[:4] for r in rows] == [
        ["0", "dev", "IDLE", "no"],
        ["1", "test", "IDLE", "no"],
        ["2", "prod", "IDLE", "yes"],
    ]
    assert "tags        v*" in shown.stdout
    doc = json.loads(run(plane.url, "--json", "stacks", "show", "shop").stdout)
    assert doc["id"] == "shop" and "secret" not in doc["webhook"]

    gone = run(plane.url, "stacks", "delete", "shop")
    assert gone.returncode == 0 and gone.stdout.strip() == "deleted stack shop"
    missing = run(plane.url, "stacks", "show", "shop")
    assert missing.returncode == 1
    assert one_line(missing.stderr) == "stagecoach: 404 NotFound: stack 'shop' does not exist"
    assert missing.stdout == ""


def test_many_stacks_are_listed_across_pages(plane: Any) -> None:
    for i in range(3):
        assert cli(plane, *create_args(f"page-{i}"))[0] == 0
    _code, out, _ = cli(plane, "stacks", "list", "--json")
    ids = [s["id"] for s in json.loads(out)["stacks"]]
    assert {"page-0", "page-1", "page-2"} <= set(ids)
    for i in range(3):
        assert cli(plane, "stacks", "delete", f"page-{i}")[0] == 0


def test_create_from_a_file(plane: Any, tmp_path: Path) -> None:
    spec = tmp_path / "stack.json"
    spec.write_text(
        json.dumps(
            {
                "name": "From File",
                "repository": {
                    "provider": "gitlab",
                    "full_name": "acme/ff",
                    "clone_url": "https://gitlab.com/acme/ff.git",
                },
                "stages": [{"name": "dev"}],
            }
        )
    )
    code, out, err = cli(plane, "stacks", "create", "--file", str(spec), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["id"] == "from-file" and doc["repository"]["provider"] == "gitlab" and doc["webhook"]["secret"]
    assert cli(plane, "stacks", "delete", "from-file")[0] == 0


def test_stages_add_move_update_remove(plane: Any) -> None:
    assert cli(plane, *create_args("stg"))[0] == 0
    code, out, err = cli(plane, "stages", "add", "stg", "qa", "--position", "1", "--approval", "--param", "Size=small")
    assert code == 0, err
    assert out.startswith("added stage qa to stg")
    names = lambda: [s["name"] for s in api(plane).get("/stacks/stg")["stages"]]  # noqa: E731
    assert names() == ["dev", "qa", "test", "prod"]

    code, out, err = cli(plane, "stages", "move", "stg", "qa", "3")
    assert code == 0, err
    assert names() == ["dev", "test", "prod", "qa"]

    assert cli(plane, "stages", "update", "stg", "qa", "--no-approval", "--param", "Color=blue")[0] == 0
    qa = api(plane).get("/stacks/stg")["stages"][3]
    assert qa["approval"] is False
    assert qa["parameters"] == {"Size": "small", "Color": "blue"}
    assert cli(plane, "stages", "update", "stg", "qa", "--unset-param", "Size")[0] == 0
    assert api(plane).get("/stacks/stg")["stages"][3]["parameters"] == {"Color": "blue"}

    code, out, _ = cli(plane, "stages", "remove", "stg", "qa", "--json")
    assert code == 0
    assert [s["name"] for s in json.loads(out)["stages"]] == ["dev", "test", "prod"]

    code, _, err = cli(plane, "stages", "add", "stg", "dev")
    assert code == 1
    assert one_line(err) == "stagecoach: 409 Conflict: stack 'stg' already has a stage 'dev'"
    code, _, err = cli(plane, "stages", "move", "stg", "dev", "9")
    assert code == 1 and one_line(err).startswith("stagecoach: 409 Conflict: position 9 is past the end")
    code, _, err = cli(plane, "stages", "move", "stg", "dev", "20")
    assert code == 1 and one_line(err).startswith("stagecoach: 400 ValidationError: position:")
    code, _, err = cli(plane, "stages", "remove", "stg", "nope")
    assert code == 1 and one_line(err).startswith("stagecoach: 404 NotFound:")
    assert cli(plane, "stacks", "delete", "stg")[0] == 0


def test_bad_input_is_one_line_with_a_non_zero_exit(plane: Any) -> None:
    code, out, err = cli(
        plane,
        "stacks",
        "create",
        "--name",
        "Bad",
        "--repo",
        "not-a-repo",
        "--clone-url",
        "/srv/x.git",
        "--stage",
        "dev",
    )
    assert code == 1 and out == ""
    line = one_line(err)
    assert line.startswith("stagecoach: 400 ValidationError:") and "owner/name" in line
    code, _, err = cli(
        plane, "stacks", "create", "--name", "Bad", "--repo", "a/b", "--clone-url", "/x", "--stage", "Dev"
    )
    assert code == 1 and "400 ValidationError" in one_line(err)
    proc = run(plane.url, "stages", "add", "nope", "dev", "--param", "broken")
    assert proc.returncode == 2 and "KEY=VALUE" in one_line(proc.stderr)
    proc = run(plane.url, "releases", "list", "nope")
    assert proc.returncode == 1
    assert one_line(proc.stderr) == "stagecoach: 404 NotFound: stack 'nope' does not exist"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_server_down_is_a_connection_error_with_exit_2() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    proc = run(url, "stacks", "list")
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert line.startswith(f"stagecoach: cannot reach {url}: connection refused")
    assert proc.stdout == ""


def test_a_server_that_never_answers_times_out_with_exit_2() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        out, err = io.StringIO(), io.StringIO()
        code = main(["--url", url, "--http-timeout", "0.5", "stacks", "list"], stdout=out, stderr=err)
    assert code == 2
    assert one_line(err.getvalue()) == f"stagecoach: {url} did not answer within 0.5s"


def test_deploy_and_releases(plane: Any) -> None:
    assert cli(plane, *create_args("deployed"))[0] == 0
    code, out, err = cli(plane, "deploy", "deployed", "--ref", "main")
    assert code == 0, err
    release_id = out.split()[1]
    assert release_id.startswith("r") and f"stagecoach watch {release_id}" in out

    code, out, _ = cli(plane, "deploy", "deployed", "--sha", "a" * 40, "--json", "--idempotency-key", "k1")
    second = json.loads(out)
    again = json.loads(cli(plane, "deploy", "deployed", "--sha", "a" * 40, "--json", "--idempotency-key", "k1")[1])
    assert again["release_id"] == second["release_id"] and again["duplicate"] is True

    code, out, _ = cli(plane, "releases", "list", "deployed")
    assert code == 0
    listed = [line.split()[0] for line in out.splitlines()[1:]]
    assert sorted(listed) == sorted([release_id, second["release_id"]])
    doc = json.loads(cli(plane, "releases", "list", "deployed", "--json", "--ref", "main")[1])
    assert [r["id"] for r in doc["releases"]] == [release_id]
    assert len(json.loads(cli(plane, "releases", "list", "deployed", "--json", "--limit", "1")[1])["releases"]) == 1

    code, out, err = cli(plane, "releases", "show", release_id)
    assert code == 0, err
    assert f"release {release_id}" in out and "refs/heads/main" in out
    assert [line.split()[1] for line in out.splitlines() if line[:1].isdigit()] == ["dev", "test", "prod"]
    assert json.loads(cli(plane, "releases", "show", release_id, "--json")[1])["id"] == release_id

    code, _, err = cli(plane, "releases", "show", "r-nope")
    assert code == 1 and one_line(err) == "stagecoach: 404 NotFound: release 'r-nope' does not exist"
    code, _, err = cli(plane, "deploy", "nope", "--ref", "main")
    assert code == 1 and "404 NotFound" in one_line(err)
    code, _, err = cli(plane, "releases", "list", "deployed", "--status", "DONE")
    assert code == 2 and "invalid choice: 'DONE'" in err  # refused before any request


def test_routes_still_being_written_fail_in_one_line(plane: Any) -> None:
    """history, logs and approvals: either the route answers or the error is one clear line."""
    ensure_stack(plane, "rel")
    release_id = json.loads(cli(plane, "deploy", "rel", "--ref", "main", "--json")[1])["release_id"]
    for argv in (["history", release_id], ["logs", release_id], ["approve", release_id, "prod", "--comment", "ok"]):
        code, _out, err = cli(plane, *argv)
        if code != 0:
            assert code == 1 and one_line(err).startswith("stagecoach: "), argv


def test_watch_a_live_release_with_a_timeout(plane: Any) -> None:
    ensure_stack(plane, "rel")
    release_id = json.loads(cli(plane, "deploy", "rel", "--ref", "main", "--json")[1])["release_id"]
    code, out, err = cli(plane, "watch", release_id, "--interval", "0.2", "--timeout", "0.5")
    assert code in (0, 1, 3), err
    assert out.startswith(f"watching release {release_id}  stack rel  main")
    code, _, err = cli(plane, "watch", "r-nope", "--timeout", "1")
    assert code == 2 and "404 NotFound" in one_line(err)


def test_with_json_errors_are_one_json_line_on_stderr(plane: Any) -> None:
    missing = run(plane.url, "--json", "releases", "show", "r-nope")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert json.loads(one_line(missing.stderr)) == {
        "code": "NotFound",
        "message": "release 'r-nope' does not exist",
        "status": 404,
    }
    invalid = run(plane.url, "releases", "list", "nope", "--json")
    assert invalid.returncode == 1 and json.loads(one_line(invalid.stderr))["status"] in (400, 404)
    refused = run(plane.url, "releases", "list", "nope", "--status", "DONE", "--json")
    assert refused.returncode == 2 and json.loads(one_line(refused.stderr))["code"] == "UsageError"
    down = run(f"http://127.0.0.1:{free_port()}", "stacks", "list", "--json")
    assert (down.returncode, down.stdout) == (2, "")
    document = json.loads(one_line(down.stderr))
    assert document["code"] == "ConnectionFailed" and "connection refused" in document["message"]
    ensure_stack(plane, "rel")
    release_id = json.loads(cli(plane, "deploy", "rel", "--ref", "main", "--json")[1])["release_id"]
    code, out, err = cli(plane, "--json", "watch", release_id, "--interval", "0.2", "--timeout", "0")
    if code == 3:  # the release (whose build cannot clone) had not failed yet; progress lines come first
        assert json.loads(err.splitlines()[-1])["code"] == "WatchTimedOut"
    assert json.loads(out)["id"] == release_id  # the release document, whatever the outcome


def run_into_a_closed_pipe(url: str, *argv: str) -> subprocess.CompletedProcess[bytes]:
    """Run the CLI with its stdout a pipe nobody reads any more (``stagecoach ... | head -1`` once head exits)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "chalicelib.cli", "--url", url, *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)


def test_a_closed_pipe_ends_quietly_with_141(plane: Any) -> None:
    ensure_stack(plane, "piped")
    for _ in range(3):
        assert cli(plane, "deploy", "piped", "--ref", "main")[0] == 0
    for argv in (["releases", "list", "piped"], ["stacks", "list"], ["releases", "list", "piped", "--json"]):
        done = run_into_a_closed_pipe(plane.url, *argv)
        assert done.stderr == b"", done.stderr.decode()
        assert done.returncode == 141, argv
    shell = subprocess.run(
        f"set -o pipefail; {sys.executable} -m chalicelib.cli --url {plane.url} releases list piped | head -1",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shell.stdout.startswith("ID ") and shell.stderr == "", shell.stderr
    assert shell.returncode in (0, 141)  # 141 when head exited before the CLI wrote everything


def test_webhook_rotate_prints_a_new_secret(plane: Any) -> None:
    assert cli(plane, *create_args("rot"))[0] == 0
    code, out, err = cli(plane, "webhook", "rotate", "rot")
    assert code == 0, err
    first = out.split("new webhook secret for rot: ", 1)[1].split()[0]
    assert len(first) >= 32 and "previous secret keeps working for 3600 seconds" in out
    second = json.loads(cli(plane, "webhook", "rotate", "rot", "--json")[1])["secret"]
    assert second != first
    code, _, err = cli(plane, "webhook", "rotate", "nope")
    assert code == 1 and one_line(err) == "stagecoach: 404 NotFound: stack 'nope' does not exist"


# ------------------------------------------------------------------ git push through the hook


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Ada",
        "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Ada",
        "GIT_COMMITTER_EMAIL": "ada@example.com",
    }
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def release_refs(plane: Any, stack: str) -> list[tuple[str, str]]:
    page = api(plane).get(f"/stacks/{stack}/releases", limit=100)
    return sorted((r["ref"], r["sha"]) for r in page["releases"])


def test_git_push_through_the_hook_makes_one_release_per_ref(plane: Any, tmp_path: Path) -> None:
    bare = tmp_path / "remote" / "gitpush.git"
    made = run(plane.url, *create_args("gitpush", str(bare), "--branch", "main", "--branch", "release/*"))
    assert made.returncode == 0, made.stderr

    connected = run(plane.url, "git", "connect", "gitpush", str(bare))
    assert connected.returncode == 0, connected.stderr
    assert f"created bare repository {bare}" in connected.stdout
    assert "rotated the stack's webhook secret" in connected.stdout
    hook = bare / "hooks" / "post-receive"
    assert os.access(hook, os.X_OK)
    assert f"-m chalicelib.cli git post-receive --url {plane.url} --stack gitpush" in hook.read_text()
    assert git(bare, "config", "stagecoach.fullname").strip() == "acme/gitpush"
    assert git(bare, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert "HEAD is refs/heads/main (the stack's first branch)" in connected.stdout
    assert "(no verified delivery yet)" in run(plane.url, "stacks", "show", "gitpush").stdout

    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "README.md").write_text("hello\n")
    git(work, "add", "README.md")
    git(work, "commit", "-q", "-m", "first commit")
    git(work, "checkout", "-q", "-b", "release/1")
    (work / "README.md").write_text("hello release\n")
    git(work, "commit", "-q", "-am", "release one")
    git(work, "checkout", "-q", "-b", "feature/x")
    git(work, "checkout", "-q", "main")

    pushed = git(work, "push", str(bare), "main", "release/1", "feature/x")
    assert pushed.count("remote: stagecoach: refs/heads/") == 3, pushed
    assert "remote: stagecoach: refs/heads/main -> release r" in pushed
    assert "remote: stagecoach: refs/heads/release/1 -> release r" in pushed
    assert "refs/heads/feature/x ignored" in pushed
    shown = run(plane.url, "stacks", "show", "gitpush").stdout
    assert "(verified " in shown and "no verified delivery" not in shown  # the signed pushes proved the hook
    main_sha = git(work, "rev-parse", "main").strip()
    release_sha = git(work, "rev-parse", "release/1").strip()
    assert release_refs(plane, "gitpush") == [("refs/heads/main", main_sha), ("refs/heads/release/1", release_sha)]
    newest = api(plane).get("/stacks/gitpush/releases", ref="main")["releases"][0]
    assert newest["message"] == "first commit" and newest["author"] == "Ada" and newest["trigger"] != "manual"

    again = git(work, "push", str(bare), "main", "release/1")
    assert "stagecoach:" not in again  # nothing changed: git does not run the hook
    redelivered = subprocess.run(
        ["sh", str(hook)],
        cwd=bare,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        input=f"{'0' * 40} {main_sha} refs/heads/main\n{'0' * 40} {release_sha} refs/heads/release/1\n",
    )
    assert redelivered.returncode == 0, redelivered.stderr
    assert redelivered.stdout.count("already released") == 2, redelivered.stdout
    assert len(release_refs(plane, "gitpush")) == 2

    deleted = git(work, "push", str(bare), "--delete", "release/1")
    assert "refs/heads/release/1 ignored: refs/heads/release/1 was deleted" in deleted
    assert len(release_refs(plane, "gitpush")) == 2

    reconnected = run(plane.url, "git", "connect", "gitpush", str(bare), "--secret", "wrong-secret")
    assert reconnected.returncode == 0 and f"using bare repository {bare}" in reconnected.stdout
    (work / "README.md").write_text("hello again\n")
    git(work, "commit", "-q", "-am", "second commit")
    rejected = git(work, "push", str(bare), "main")  # the push itself succeeds
    assert "stagecoach: warning: refs/heads/main not released: 401" in rejected
    assert len(release_refs(plane, "gitpush")) == 2


def test_git_hook_never_fails_a_push_when_the_plane_is_down(plane: Any, tmp_path: Path) -> None:
    bare = tmp_path / "down.git"
    assert cli(plane, *create_args("gitdown", str(bare)))[0] == 0
    down = f"http://127.0.0.1:{free_port()}"
    code, out, err = cli(plane, "git", "connect", "gitdown", str(bare), "--secret", "s", "--provider-url", down)
    assert code == 0, err
    assert "no --secret given" not in out
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "f").write_text("x")
    git(work, "add", "f")
    git(work, "commit", "-q", "-m", "c")
    pushed = git(work, "push", str(bare), "main")
    assert f"stagecoach: warning: refs/heads/main not sent: cannot reach {down}" in pushed
    assert release_refs(plane, "gitdown") == []


def test_git_connect_refuses_a_path_that_is_not_a_bare_repository(plane: Any, tmp_path: Path) -> None:
    ensure_stack(plane, "rel")
    work = tmp_path / "checkout"
    work.mkdir()
    git(work, "init", "-q")
    code, _, err = cli(plane, "git", "connect", "rel", str(work), "--secret", "s")
    assert code == 1 and one_line(err) == f"stagecoach: {work} exists and is not a bare git repository"
    code, _, err = cli(plane, "git", "connect", "nope", str(tmp_path / "new.git"), "--secret", "s")
    assert code == 1 and "404 NotFound" in one_line(err)


def test_cancel_mode_and_forced_delete(plane: Any) -> None:
    assert cli(plane, *create_args("cancelled", "https://github.com/acme/x.git", "--mode", "QUEUED"))[0] == 0
    assert json.loads(cli(plane, "stacks", "show", "cancelled", "--json")[1])["execution_mode"] == "QUEUED"
    code, out, err = cli(plane, "stacks", "mode", "cancelled", "SUPERSEDED")
    assert code == 0 and "execution mode SUPERSEDED" in out, err
    release_id = json.loads(cli(plane, "deploy", "cancelled", "--ref", "main", "--json")[1])["release_id"]
    code, out, err = cli(plane, "cancel", release_id, "--reason", "wrong branch")
    assert code == 0, err
    assert out.strip() == f"release {release_id} CANCELLED (cancelled by local-user: wrong branch)"
    assert cli(plane, "cancel", release_id)[0] == 0  # again: the same answer
    code, out, _ = cli(plane, "releases", "list", "cancelled")
    assert "CANCELLED by local-user" in out
    code, _, err = cli(plane, "cancel", "r-nope")
    assert code == 1 and "404 NotFound" in one_line(err)
    assert cli(plane, "stacks", "delete", "cancelled", "--force")[0] == 0
    assert cli(plane, "stacks", "show", "cancelled")[0] == 1


def test_notifications_and_audit(plane: Any) -> None:
    assert cli(plane, *create_args("notes"))[0] == 0
    code, out, err = cli(
        plane,
        "notifications",
        "commit-status",
        "notes",
        "--token",
        "-",
        "--api-url",
        "http://127.0.0.1:9/api",
        stdin="ghp_from_stdin\n",
    )
    assert code == 0, err
    assert out.splitlines()[0] == "commit statuses: github at http://127.0.0.1:9/api (token ***)"
    hook = "https://ci.example.com/hook"
    code, out, err = cli(
        plane,
        "notifications",
        "add",
        "notes",
        "webhook",
        hook,
        "--secret",
        "-",
        "--event",
        "release.ended",
        stdin="0123456789abcdef01\n",
    )
    assert code == 0, err
    assert f"webhook: {hook} (release.ended)" in out
    code, out, err = cli(plane, "notifications", "add", "notes", "slack", "https://hooks.slack.com/services/T/B/X")
    assert code == 0, err
    stack = api(plane).get("/stacks/notes")
    assert [t["type"] for t in stack["notifications"]] == ["webhook", "slack"]
    assert stack["notifications"][0]["secret"] == "***"  # kept through the second PATCH
    assert "ghp_from_stdin" not in json.dumps(stack) and "0123456789abcdef01" not in json.dumps(stack)
    code, out, err = cli(plane, "notifications", "list", "notes")
    assert code == 0, err
    assert "no deliveries" in out and "slack: https://hooks.slack.com/services/T/B/X" in out
    assert cli(plane, "notifications", "remove", "notes", hook)[0] == 0
    code, _, err = cli(plane, "notifications", "remove", "notes", hook)
    assert code == 1 and "no notification target" in err
    code, _, err = cli(plane, "notifications", "add", "notes", "webhook", hook)
    assert code == 2 and "--secret" in err
    assert cli(plane, "notifications", "commit-status", "notes", "--off")[0] == 0
    code, out, err = cli(plane, "audit", "notes")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["AT", "(UTC)", "ACTOR", "ACTION", "TARGET", "DETAIL"]
    assert [line.split()[3] for line in lines[1:]] == ["stack.update"] * 5 + ["stack.create"]
    code, out, err = cli(plane, "--json", "audit", "--limit", "2")
    assert code == 0, err
    assert len(json.loads(out)["entries"]) == 2
