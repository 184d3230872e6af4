"""The web dashboard in a real browser (Debian's Chromium driven by Playwright) against a real local control
plane running real releases: overview, stack page, approving by clicking, live updates without reloads,
cancel / roll back / unpin behind a confirmation, the release page, a phone-width layout, and the JS SigV4
signer against botocore's.

Screenshots go to out/screenshots/ (git-ignored). Every wait is Playwright's auto-waiting ``expect`` or a
polled condition with a deadline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.support import chromium_path
from tests.e2e.pipeline_support import example_repo, git
from tests.plane import http, running_plane
from tests.webhook_support import github_headers, github_push

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "out" / "screenshots"
RELEASE_TIMEOUT_MS = 150_000
UI_TIMEOUT_MS = 20_000
STACK = "shop"


@pytest.fixture(scope="module")
def plane() -> Iterator[Any]:
    with running_plane(pump=True) as plane:
        yield plane


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def shop(plane: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The example stack (dev → prod with approval) and its git repo; returns what the tests share."""
    repo, sha = example_repo(tmp_path_factory.mktemp("shop"))
    body = {
        "id": STACK,
        "name": "Shop API",
        "repository": {"provider": "github", "full_name": "acme/shop", "clone_url": str(repo)},
        "stages": [
            {"name": "dev", "parameters": {"Stage": "dev"}},
            {"name": "prod", "parameters": {"Stage": "prod"}, "approval": True},
        ],
    }
    status, created = http("POST", f"{plane.url}/stacks", body)
    assert status == 201, created
    SHOTS.mkdir(parents=True, exist_ok=True)
    return {"repo": repo, "secret": created["webhook"]["secret"], "first_sha": sha}


def push(plane: Any, shop: dict[str, Any], sha: str, message: str, author: str) -> str:
    """A signed GitHub push of ``sha``; returns the new release's id."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1800))
    payload = github_push(
        sha=sha,
        full_name="acme/shop",
        created=True,
        head_commit={"id": sha, "message": message, "timestamp": stamp, "author": {"name": author}},
    )
    raw = json.dumps(payload).encode()
    status, body = http("POST", f"{plane.url}/webhooks/github/{STACK}", raw, github_headers(shop["secret"], raw))
    assert status == 202, body
    return str(body["release_id"])


def commit(shop: dict[str, Any], text: str) -> str:
    """A new commit in the stack's repo; returns its sha."""
    repo = shop["repo"]
    (repo / "CHANGES.txt").write_text(text + "\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", text)
    return git(repo, "rev-parse", "HEAD")


def release(plane: Any, release_id: str) -> dict[str, Any]:
    status, body = http("GET", f"{plane.url}/releases/{release_id}")
    assert status == 200, body
    return dict(body)


def wait_for(check: Any, what: str, timeout: float = RELEASE_TIMEOUT_MS / 1000) -> Any:
    """Poll ``check()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def stage_status(plane: Any, release_id: str, stage: str) -> str:
    return str(next(s["status"] for s in release(plane, release_id)["stages"] if s["name"] == stage))


def open_page(browser: Any, url: str, width: int = 1280, height: int = 900) -> Any:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.evaluate("window.__sameDocument = true")  # gone if the page ever reloads
    page.errors = errors  # type: ignore[attr-defined]
    return page


def no_reload_and_no_errors(page: Any) -> None:
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"
    assert page.errors == [], page.errors


@pytest.fixture(scope="module")
def first_release(plane: Any, shop: dict[str, Any]) -> str:
    release_id = push(plane, shop, shop["first_sha"], "Add the checkout endpoint", "Ada")
    wait_for(lambda: stage_status(plane, release_id, "prod") == "AWAITING_APPROVAL", "prod to await approval")
    return release_id


def test_overview_shows_each_stage_and_highlights_the_waiting_approval(
    plane: Any, browser: Any, shop: dict[str, Any], first_release: str
) -> None:
    from playwright.sync_api import expect

    page = open_page(browser, f"{plane.url}/?refresh_ms=1000")
    card = page.locator(f'article.stack-card[data-stack="{STACK}"]')
    expect(card.get_by_role("link", name="Shop API")).to_be_visible(timeout=UI_TIMEOUT_MS)
    dev = card.locator('.stage[data-stage="dev"]')
    prod = card.locator('.stage[data-stage="prod"]')
    expect(dev.locator(".badge")).to_have_text("succeeded", timeout=UI_TIMEOUT_MS)
    expect(dev).to_contain_text(shop["first_sha"][:7])
    expect(dev).to_contain_text("Add the checkout endpoint")
    expect(dev).to_contain_text("Ada")
    expect(prod.locator(".badge").first).to_have_text("awaiting approval")
    expect(prod).to_have_class("stage attention")
    expect(card).to_contain_text("1 approval waiting")
    page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)
    no_reload_and_no_errors(page)
    page.context.close()


def test_approving_by_clicking_keeps_the_typed_comment_and_the_release_succeeds_live(
    plane: Any, browser: Any, shop: dict[str, Any], first_release: str
) -> None:
    from playwright.sync_api import expect

    page = open_page(browser, f"{plane.url}/ui/stacks/{STACK}?refresh_ms=1000")
    form = page.locator(f'form.approval[data-key="{first_release}/prod"]')
    expect(form).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(form).to_contain_text("to add")  # the change-set preview of the first deploy
    comment = form.get_by_label("Comment (optional)")
    comment.fill("Checked the change set")
    live = page.locator("#live")
    before = live.inner_text()
    expect(live).not_to_have_text(before, timeout=UI_TIMEOUT_MS)  # a refresh went by...
    before = live.inner_text()
    expect(live).not_to_have_text(before, timeout=UI_TIMEOUT_MS)  # ...and another
    expect(comment).to_have_value("Checked the change set")
    page.screenshot(path=str(SHOTS / "stack-approval.png"), full_page=True)

    form.get_by_role("button", name="Approve prod").click()
    row = page.locator(f'tr[data-release="{first_release}"]')
    expect(row.locator(".badge").first).to_have_text("succeeded", timeout=RELEASE_TIMEOUT_MS)
    expect(page.locator("form.approval")).to_have_count(0)
    expect(page.locator('.stage[data-stage="prod"] .badge').first).to_have_text("succeeded")
    approval = next(s for s in release(plane, first_release)["stages"] if s["name"] == "prod")["approval"]
    assert approval["decision"] == "approved"
    assert approval["comment"] == "Checked the change set"
    # the metrics panel counts the prod deploy (it reloads on a change of window)
    page.get_by_label("Window").select_option("7")
    frequency = page.locator('[data-metric="Deployment frequency"]')
    expect(frequency).to_contain_text("1 deploys", timeout=UI_TIMEOUT_MS)
    expect(page.locator('[data-metric="Lead time for changes"] .badge')).to_have_text("elite")
    expect(page.locator("svg.chart rect.bar-ok")).to_have_count(8)
    page.screenshot(path=str(SHOTS / "stack.png"), full_page=True)
    no_reload_and_no_errors(page)
    page.context.close()


def test_the_release_page_shows_the_timeline_and_the_build_log(plane: Any, browser: Any, first_release: str) -> None:
    from playwright.sync_api import expect

    wait_for(lambda: release(plane, first_release)["status"] == "SUCCEEDED", "the first release to succeed")
    page = open_page(browser, f"{plane.url}/ui/releases/{first_release}")
    timeline = page.locator(".timeline")
    expect(timeline.locator('li[data-stage="dev"] .badge')).to_have_text("succeeded", timeout=UI_TIMEOUT_MS)
    expect(timeline.locator('li[data-stage="prod"]')).to_contain_text("approved by")
    expect(page.locator("#build-log")).not_to_be_empty()
    expect(page.locator(".facts")).to_contain_text("Ada")
    expect(page.get_by_role("link", name="Step Functions console")).to_have_count(0)  # local: no AWS console
    page.get_by_text("Every state the Step Functions execution went through").click()
    expect(page.locator("#steps-body tbody tr").first).to_be_visible()
    expect(page.locator("#steps-body")).to_contain_text("prod")
    page.screenshot(path=str(SHOTS / "release.png"), full_page=True)
    no_reload_and_no_errors(page)
    page.context.close()


def test_the_cli_prints_the_same_metrics(plane: Any, first_release: str) -> None:
    import io

    from chalicelib.cli import main

    wait_for(lambda: release(plane, first_release)["status"] == "SUCCEEDED", "the first release to succeed")
    out, err = io.StringIO(), io.StringIO()
    code = main(["--url", plane.url, "--json", "metrics", STACK, "--days", "7"], stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    document = json.loads(out.getvalue())
    assert document["stage"] == "prod"
    assert document["deployment_frequency"]["deployments"] == 1
    out = io.StringIO()
    assert main(["--url", plane.url, "metrics", STACK, "--stage", "dev"], stdout=out, stderr=err) == 0
    assert out.getvalue().startswith(f"{STACK} / dev: last 30 days")
    assert main(["--url", plane.url, "metrics", STACK, "--days", "0"], stdout=io.StringIO(), stderr=err) != 0
    assert "days" in err.getvalue()


def test_cancel_asks_first_and_a_dismissed_confirmation_changes_nothing(
    plane: Any, browser: Any, shop: dict[str, Any], first_release: str
) -> None:
    from playwright.sync_api import expect

    wait_for(lambda: release(plane, first_release)["status"] == "SUCCEEDED", "the first release to succeed")
    release_id = push(plane, shop, commit(shop, "Tune the cache"), "Tune the cache", "Grace")
    page = open_page(browser, f"{plane.url}/ui/stacks/{STACK}?refresh_ms=1000")
    row = page.locator(f'tr[data-release="{release_id}"]')
    cancel = row.get_by_role("button", name="Cancel…")
    cancel.click(timeout=UI_TIMEOUT_MS)
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Keep as is").click()
    expect(dialog).to_be_hidden()
    assert release(plane, release_id)["status"] in ("PENDING", "RUNNING")
    cancel.click()
    dialog.get_by_label("Reason (optional)").fill("wrong branch")
    dialog.get_by_role("button", name="Cancel release").click()
    expect(row.locator(".badge").first).to_have_text("cancelled", timeout=RELEASE_TIMEOUT_MS)
    assert release(plane, release_id)["status"] == "CANCELLED"
    no_reload_and_no_errors(page)
    page.context.close()


def test_roll_back_pins_the_stage_and_unpin_frees_it_each_behind_a_confirmation(
    plane: Any, browser: Any, shop: dict[str, Any], first_release: str
) -> None:
    from playwright.sync_api import expect

    second = push(plane, shop, commit(shop, "Faster search"), "Faster search", "Linus")
    wait_for(lambda: stage_status(plane, second, "dev") == "SUCCEEDED", "the second release on dev")
    page = open_page(browser, f"{plane.url}/ui/stacks/{STACK}?refresh_ms=1000")
    dev = page.locator('.pipeline .stage[data-stage="dev"]')
    expect(dev).to_contain_text("Faster search", timeout=UI_TIMEOUT_MS)
    dev.get_by_role("button", name="Roll back…").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_contain_text("pins the stage")
    dialog.get_by_label("Reason (required)").fill("search is slower in dev")
    dialog.get_by_role("button", name="Roll back").click()
    expect(dev).to_contain_text("pinned", timeout=UI_TIMEOUT_MS)
    expect(dev).to_contain_text("search is slower in dev")
    expect(dev).to_contain_text("Add the checkout endpoint", timeout=RELEASE_TIMEOUT_MS)  # the first build again
    dev.get_by_role("button", name="Unpin…").click()
    dialog.get_by_role("button", name="Unpin").click()
    expect(dev.get_by_role("button", name="Unpin…")).to_have_count(0, timeout=UI_TIMEOUT_MS)
    status, stack = http("GET", f"{plane.url}/stacks/{STACK}")
    assert status == 200
    assert next(s for s in stack["stages"] if s["name"] == "dev")["pin"] is None
    no_reload_and_no_errors(page)
    page.context.close()


def test_rejecting_by_clicking_fails_the_release_at_that_stage(
    plane: Any, browser: Any, shop: dict[str, Any], first_release: str
) -> None:
    from playwright.sync_api import expect

    release_id = push(plane, shop, commit(shop, "Risky migration"), "Risky migration", "Edsger")
    wait_for(lambda: stage_status(plane, release_id, "prod") == "AWAITING_APPROVAL", "prod to await approval")
    page = open_page(browser, f"{plane.url}/ui/releases/{release_id}?refresh_ms=1000")
    form = page.locator(f'form.approval[data-key="{release_id}/prod"]')
    expect(form).to_be_visible(timeout=UI_TIMEOUT_MS)
    form.get_by_label("Comment (optional)").fill("not during the sale")
    form.get_by_role("button", name="Reject").click()
    expect(page.locator(".facts .badge").first).to_have_text("failed", timeout=RELEASE_TIMEOUT_MS)
    expect(page.locator('.timeline li[data-stage="prod"]')).to_contain_text("rejected by")
    expect(page.locator('.timeline li[data-stage="prod"]')).to_contain_text("not during the sale")
    expect(form).to_have_count(0)
    no_reload_and_no_errors(page)
    page.context.close()


def test_promote_asks_which_release_then_deploys_its_build_to_the_stage(
    plane: Any, browser: Any, shop: dict[str, Any], first_release: str
) -> None:
    from playwright.sync_api import expect

    release_id = push(plane, shop, commit(shop, "Dark mode"), "Dark mode", "Barbara")
    wait_for(lambda: stage_status(plane, release_id, "prod") == "AWAITING_APPROVAL", "prod to await approval")
    status, _ = http("POST", f"{plane.url}/releases/{release_id}/stages/prod/reject", {"comment": "later"})
    assert status == 200
    wait_for(lambda: release(plane, release_id)["status"] == "FAILED", "the rejected release to fail")
    page = open_page(browser, f"{plane.url}/ui/stacks/{STACK}?refresh_ms=1000")
    prod = page.locator('.pipeline .stage[data-stage="prod"]')
    expect(page.locator(f'tr[data-release="{release_id}"] .badge').first).to_have_text("failed", timeout=UI_TIMEOUT_MS)
    prod.get_by_role("button", name="Promote…").click()
    dialog = page.locator("#confirm-dialog")
    dialog.get_by_label("Release").select_option(release_id)
    dialog.get_by_role("button", name="Deploy").click()
    expect(page.locator(".notice")).to_contain_text(f"Deploying {release_id} to prod")
    form = page.locator("form.approval")  # prod asks for its approval again: a promote deploys like a release
    expect(form).to_be_visible(timeout=RELEASE_TIMEOUT_MS)
    form.get_by_role("button", name="Approve prod").click()
    expect(prod).to_contain_text("Dark mode", timeout=RELEASE_TIMEOUT_MS)
    expect(prod.locator(".badge").first).to_have_text("succeeded", timeout=RELEASE_TIMEOUT_MS)
    no_reload_and_no_errors(page)
    page.context.close()


def test_phone_width_stacks_the_stages_without_sideways_scrolling(plane: Any, browser: Any, first_release: str) -> None:
    from playwright.sync_api import expect

    page = open_page(browser, f"{plane.url}/ui/stacks/{STACK}", width=390, height=844)
    dev = page.locator('.pipeline .stage[data-stage="dev"]')
    prod = page.locator('.pipeline .stage[data-stage="prod"]')
    expect(prod).to_be_visible(timeout=UI_TIMEOUT_MS)
    dev_box, prod_box = dev.bounding_box(), prod.bounding_box()
    assert dev_box is not None and prod_box is not None
    assert prod_box["y"] >= dev_box["y"] + dev_box["height"], "stages should stack vertically on a phone"
    assert dev_box["width"] > 300
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px"
    button = dev.get_by_role("button", name="Promote…")
    box = button.bounding_box()
    assert box is not None and box["height"] >= 32, "buttons keep a touch-sized height"
    expect(page.locator('[data-metric="Deployment frequency"]')).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.locator("#live")).to_contain_text("Updated")
    page.screenshot(path=str(SHOTS / "phone-stack.png"), full_page=True)
    no_reload_and_no_errors(page)
    page.context.close()


def test_keyboard_reaches_the_actions_with_a_visible_focus(plane: Any, browser: Any, first_release: str) -> None:
    from playwright.sync_api import expect

    page = open_page(browser, f"{plane.url}/ui/stacks/{STACK}")
    promote = page.locator('.pipeline .stage[data-stage="dev"]').get_by_role("button", name="Promote…")
    expect(promote).to_be_visible(timeout=UI_TIMEOUT_MS)
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.textContent") == "Promote…":
            break
    assert page.evaluate("document.activeElement.textContent") == "Promote…"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), "the focused button shows a focus ring"
    page.keyboard.press("Enter")
    expect(page.locator("#confirm-dialog")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#confirm-dialog")).to_be_hidden()
    page.context.close()


def test_a_403_offers_sign_in_and_then_every_call_is_signed_with_sigv4(
    plane: Any, browser: Any, first_release: str
) -> None:
    """The AWS path end to end in the browser: the API refuses unsigned calls (as API Gateway's IAM
    authorizer does), the user pastes credentials, the pages sign what they send; botocore agrees."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from playwright.sync_api import expect

    seen: list[dict[str, str]] = []

    def gate(route: Any) -> None:
        headers = dict(route.request.headers)
        if "authorization" not in headers:
            route.fulfill(
                status=403, content_type="application/json", body='{"message": "Missing Authentication Token"}'
            )
            return
        seen.append({"url": route.request.url, "method": route.request.method, **headers})
        route.continue_()

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.route(f"{plane.url}/stacks?*", gate)
    page.goto(f"{plane.url}/")
    sign_in = page.get_by_role("button", name="Sign in")
    expect(sign_in).to_be_visible(timeout=UI_TIMEOUT_MS)
    sign_in.click()
    dialog = page.locator("#sign-in-dialog")
    dialog.get_by_label("Access key id").fill("AKIDEXAMPLE")
    dialog.get_by_label("Secret access key").fill("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    dialog.get_by_label("Session token").fill("session-token-1")
    dialog.get_by_label("Region").fill("eu-west-1")
    dialog.get_by_role("button", name="Sign in").click()
    expect(page.locator(f'article.stack-card[data-stack="{STACK}"]')).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('stagecoach.credentials')") is not None
    sent = seen[0]
    assert sent["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in sent["authorization"]
    assert sent["x-amz-security-token"] == "session-token-1"
    request = AWSRequest(
        method=sent["method"],
        url=sent["url"],
        data=b"",
        headers={"X-Amz-Date": sent["x-amz-date"], "X-Amz-Security-Token": sent["x-amz-security-token"]},
    )
    request.context["timestamp"] = sent["x-amz-date"]
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-1")
    auth = SigV4Auth(credentials, "execute-api", "eu-west-1")
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    assert sent["authorization"].endswith(f"Signature={expected}")
    page.get_by_role("button", name="Sign out").click()
    assert page.evaluate("sessionStorage.getItem('stagecoach.credentials')") is None
    context.close()


@pytest.mark.parametrize(
    ("method", "path", "body", "token"),
    [
        ("GET", "/api/stacks?limit=5&next_token=abc", "", None),
        ("POST", "/api/releases/r01JD5Z3Q8M6X2K7N4P9T1V3W5Y/stages/prod/approve", '{"comment":"ok ✓"}', "FQoGZXIvYXdz"),
        ("DELETE", "/api/stacks/hello/stages/prod/pin", "", "token/with+chars="),
    ],
)
def test_the_browser_signer_matches_botocore(
    plane: Any, browser: Any, method: str, path: str, body: str, token: str | None
) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"https://abc123defg.execute-api.eu-west-1.amazonaws.com{path}"
    when = "2026-11-27T12:34:56Z"
    page = open_page(browser, f"{plane.url}/")
    headers = {"Content-Type": "application/json"} if body else {}
    signed = page.evaluate(
        """([method, url, body, token, headers, when]) => StagecoachSigV4.sign({
            method, url, body, headers, sessionToken: token || undefined, now: new Date(when),
            accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY'})""",
        [method, url, body, token, headers, when],
    )
    request = AWSRequest(method=method, url=url, data=body.encode(), headers=dict(headers))
    request.context["timestamp"] = "20261127T123456Z"
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    auth = SigV4Auth(credentials, "execute-api", "eu-west-1")
    auth._modify_request_before_signing(request)
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    auth._inject_signature_to_request(request, expected)
    assert signed["X-Amz-Date"] == "20261127T123456Z"
    assert signed["Authorization"] == request.headers["Authorization"]
    assert "Credential=AKIDEXAMPLE/20261127/eu-west-1/execute-api/aws4_request" in signed["Authorization"]
    assert signed.get("X-Amz-Security-Token") == token
    page.context.close()


# AWS's SigV4 test suite (aws-sig-v4-test-suite: get-vanilla, get-vanilla-query, get-vanilla-query-order-key-case):
# service "service", us-east-1, 20150830T123600Z, the suite's example credentials.
SUITE = [
    ("https://example.amazonaws.com/", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    (
        "https://example.amazonaws.com/?Param1=value1",
        "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb",
    ),
    (
        "https://example.amazonaws.com/?Param2=value2&Param1=value1",
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    ),
]


def test_the_browser_signer_gives_the_published_test_suite_signatures(plane: Any, browser: Any) -> None:
    page = open_page(browser, f"{plane.url}/")
    for url, signature in SUITE:
        signed = page.evaluate(
            """(url) => StagecoachSigV4.sign({method: 'GET', url, body: '', service: 'service', region: 'us-east-1',
                now: new Date('2015-08-30T12:36:00Z'), accessKeyId: 'AKIDEXAMPLE',
                secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY'})""",
            url,
        )
        assert signed["Authorization"] == (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            f"SignedHeaders=host;x-amz-date, Signature={signature}"
        ), url
    page.context.close()
