"""GET /dashboard in a real headless Chromium: the newest monitoring report, its embedded 6-panel PNG."""
from __future__ import annotations

import threading

import pytest
from typer.testing import CliRunner
from werkzeug.serving import make_server

from service_helpers import copy_project
from tabpipe.cli import app as cli_app
from tabpipe.sources.sample import generate
from tabpipe.serving.app import create_app
from test_form_browser import CDP, browser, chromium, main_project, screenshot  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def project(main_project, tmp_path_factory):  # noqa: F811
    """A copy of the main project (no run folders: copy_project leaves artifacts/ out)."""
    return copy_project(main_project, tmp_path_factory.mktemp("dash") / "p", production="v0002")


@pytest.fixture(scope="module")
def served(project):
    application = create_app(project)
    server = make_server("127.0.0.1", 0, application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield application, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)
    application.extensions["tabpipe"]["holder"].stop()


def test_no_report_yet_is_a_404_with_the_reason(served):
    application, _ = served
    response = application.test_client().get("/dashboard")
    assert response.status_code == 404
    assert "run `tabpipe train` or `tabpipe monitor` first" in response.get_json()["error"]


def test_dashboard_in_the_browser_after_a_monitoring_run(served, project, browser, tmp_path):  # noqa: F811
    _, base = served
    shifted = project.parent / "shifted.csv"
    generate(1500, seed=31, shift=1.0).to_csv(shifted, index=False)
    done = CliRunner().invoke(cli_app, ["monitor", "--config", str(project), "--input", str(shifted),
                                        "--labels", "fault_flag"], env={"COLUMNS": "200"})
    assert done.exit_code == 3, done.output                       # retrain decided
    browser.navigate(base + "/dashboard")
    page = browser.evaluate("""
    (() => {
      const img = document.getElementById('dashboard');
      return {title: document.getElementById('title').textContent, decision: document.getElementById('decision').textContent,
              reasons: document.querySelectorAll('#reasons li').length, loaded: img.complete,
              width: img.naturalWidth, height: img.naturalHeight, tables: document.querySelectorAll('table').length};
    })()
    """)
    assert page["title"].startswith("tabpipe monitoring — v0002 — file shifted.csv")
    assert page["decision"] == "decision: retrain" and page["reasons"] >= 1
    assert page["loaded"] and (page["width"], page["height"]) == (1280, 760)   # the 6-panel PNG decoded
    assert page["tables"] == 4                                              # metrics, model card, drift, quality
    screenshot(browser, tmp_path / "dashboard.png")
