"""The side panel as a person sees it, at 1440x900 in the light and the dark theme, in a
real JupyterLab and Chromium over a real store and schedule database: version actions
say what they do in words; with one model the sections are as tall as their content (or
share what is left evenly) and Jobs is in view; a schedule's notebook path wraps only
between folders and its next run names the zone of each time; the promote dialog judges
on the key metric and moves one of the model's aliases; the set-alias dialog refuses a
reserved name as it is typed."""

from __future__ import annotations

import re
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from browser import ARTIFACTS, CONTRAST_JS, browser_page, chromium_path, jupyterlab, set_theme
from helpers import make_notebook, new_project

from mlops_nb.config import resolve_config
from mlops_nb.jobs.schedules.store import ScheduleStore
from mlops_nb.provenance import NotebookLocation
from mlops_nb.tracking import Tracker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium_path() is None, reason="Chromium is missing: run `make test`, which installs it"),
]

PANEL_TAB = ".jp-SideBar [data-id='mlops-nb-registry']"
PANEL = "#mlops-nb-registry"
JOBS = "#mlops-nb-jobs"
MODEL = f"{PANEL} [data-model='tumour-classifier']"
THEMES = (("JupyterLab Light", "light", "true"), ("JupyterLab Dark", "dark", "false"))
# Long enough to wrap in the panel; no folder or file name is wider than the panel.
TARGET = "notebooks/experiments/tumour-classifier/nightly/train_forest.ipynb"
ZONE = "Europe/Berlin"
ACTIONS = ["Details", "Notebook", "Copy code", "Set alias…", "Promote…"]
# As scikit-learn autologging and a notebook log them: the alphabetically first is
# autologging's test score; the key metric is the one the person logged, test_accuracy.
METRICS = {
    "1": {
        "RandomForestClassifier_score_X_test": 0.90,
        "test_accuracy": 0.90,
        "training_accuracy_score": 1.0,
        "training_log_loss": 0.05,
    },
    "2": {
        "RandomForestClassifier_score_X_test": 0.95,
        "test_accuracy": 0.95,
        "training_accuracy_score": 1.0,
        "training_log_loss": 0.04,
    },
}

# Whether the element is drawn where a person can see it: inside the window, and the
# topmost element at its centre is the element itself (not clipped or covered).
ON_SCREEN_JS = """
(el) => {
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0 || r.top < 0 || r.bottom > innerHeight || r.right > innerWidth) return false;
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return !!hit && (el.contains(hit) || hit.contains(el));
}
"""

# Where the text of a wrapped element breaks: the character before each line start.
LINE_BREAKS_JS = """
(el) => {
  const chars = [];
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    for (let i = 0; i < n.length; i++) {
      const range = document.createRange();
      range.setStart(n, i);
      range.setEnd(n, i + 1);
      const rect = range.getClientRects()[0];
      chars.push([n.data[i], rect ? rect.top : null]);
    }
  }
  const before = [];
  for (let i = 1; i < chars.length; i++) {
    if (chars[i][1] !== null && chars[i - 1][1] !== null && chars[i][1] > chars[i - 1][1] + 2) before.push(chars[i - 1][0]);
  }
  return { text: chars.map(c => c[0]).join(''), before };
}
"""

# The registry, Deployments and Jobs sections: their heights against what their content needs.
SECTIONS_JS = """
() => {
  const measure = section => {
    const body = section.querySelector('.jp-mlops-section-body');
    const style = getComputedStyle(section);
    return {
      height: section.getBoundingClientRect().height,
      needs: body.getBoundingClientRect().height + parseFloat(style.paddingTop) + parseFloat(style.paddingBottom),
      overflow: section.scrollHeight - section.clientHeight,
    };
  };
  const registry = document.querySelector('#mlops-nb-registry .jp-mlops-registry');
  const titles = [...registry.parentElement.querySelectorAll(':scope > .lm-AccordionPanel-title')];
  return {
    registry: measure(registry),
    deployments: measure(document.querySelector('#mlops-nb-deployments')),
    jobs: measure(document.querySelector('#mlops-nb-jobs')),
    // What the layout leaves between the registry's last line and the next title.
    gap: titles[1].getBoundingClientRect().top - registry.getBoundingClientRect().bottom,
  };
}
"""
# Each section is as tall as its content, or, when they cannot all be, the shorter ones
# are and the others share the rest evenly and scroll (none shorter than a section that fits).
SIZED_JS = f"""
() => {{
  const {{ gap, ...sections }} = ({SECTIONS_JS})();
  const all = Object.values(sections);
  const fits = s => Math.abs(s.height - s.needs) <= 2 && s.overflow <= 1;
  const scrolls = s => s.height < s.needs && s.overflow > 0;
  const scrolling = all.filter(scrolls);
  const fitting = all.filter(fits);
  const shared = scrolling.every(s => Math.abs(s.height - scrolling[0].height) <= 2
    && fitting.every(f => f.height <= s.height + 2));
  return gap <= 6 && fitting.length + scrolling.length === all.length && shared;
}}
"""


@pytest.fixture
def one_model_root(tmp_path: Path):
    """One model, 'tumour-classifier': v1 @champion and @staging, v2 @challenger (better on
    test_accuracy), trained in TARGET; one schedule running TARGET at 02:00 in Berlin."""
    from sklearn.linear_model import LogisticRegression

    from mlops_nb.store import get_client

    root = new_project(tmp_path)
    path = make_notebook(root / TARGET, [("code", "%load_ext mlops_nb", [])])
    config = resolve_config(root, environ={})
    tracker = Tracker(notebook=NotebookLocation(path, "test"), config=config)
    model = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])
    for version, alias in (("1", "champion"), ("2", "challenger")):
        handle = tracker.start_cell_run(f"fit-v{version}", autolog=False)
        for key, value in METRICS[version].items():
            tracker.log_metric(key, value)
        tracker.flush()
        tracker.register_model(model, "tumour-classifier", alias, input_example=np.array([[0.0, 1.0]]))
        tracker.end_run(handle)
    tracker.close()
    client = get_client(config)
    client.set_registered_model_alias("tumour-classifier", "staging", "1")
    store = ScheduleStore.for_project(config)
    store.add("nightly-train", "0 2 * * *", TARGET, timezone=ZONE)
    return root, client, store


def _readable(locator, what: str, theme: str) -> None:
    ratio = locator.evaluate(CONTRAST_JS, {"blend": True})
    assert ratio >= 4.5, f"{what} in {theme}: contrast {ratio:.2f}"


def _assert_jobs_in_view(page, registry_fits: bool) -> None:
    """The Jobs section's schedule and its buttons are drawn in the window; the sections
    are sized to their content (``registry_fits``: the registry's all fits)."""
    schedule = page.locator(f"{JOBS} [data-schedule='nightly-train']")
    page.wait_for_function(
        f"(el) => ({ON_SCREEN_JS})(el)",
        arg=schedule.locator(".jp-mlops-schedule-name").element_handle(),
        timeout=10_000,
    )
    run_now = schedule.locator(".jp-ToolbarButtonComponent", has_text="Run now")
    assert run_now.evaluate(ON_SCREEN_JS), "Run now is below the fold"
    try:
        page.wait_for_function(SIZED_JS, timeout=10_000)
    except Exception:
        raise AssertionError(f"sections not sized to their content: {page.evaluate(SECTIONS_JS)}") from None
    sections = page.evaluate(SECTIONS_JS)
    if registry_fits:
        assert sections["registry"]["overflow"] <= 1, sections


def _check_actions(page, theme: str) -> None:
    """Every version row offers its actions in words, drawn and readable."""
    for version in ("1", "2"):
        buttons = page.locator(
            f"{MODEL} [data-version='{version}'] .jp-mlops-version-actions .jp-ToolbarButtonComponent"
        )
        assert [t.strip() for t in buttons.all_inner_texts()] == ACTIONS
        for i in range(buttons.count()):
            label = buttons.nth(i).locator(".jp-ToolbarButtonComponent-label")
            label.scroll_into_view_if_needed()  # v1 may be below v2 in a scrolling section
            assert label.evaluate(ON_SCREEN_JS), f"{ACTIONS[i]} of v{version} is not drawn in view"
            _readable(label, f"the {ACTIONS[i]} label", theme)


def _clock(text: str) -> tuple[int, int]:
    """'01:00', '01:00 AM' or '1:00 PM' as (hour, minute) on a 24-hour clock."""
    match = re.fullmatch(r"(\d{1,2}):(\d\d)(?:\s?([AP]M))?", text.strip())
    assert match, text
    hour, minute, half = int(match[1]), int(match[2]), match[3]
    if half:
        hour = hour % 12 + (12 if half == "PM" else 0)
    return hour, minute


def _check_schedule(page, store, theme: str) -> None:
    """The target wraps only after a '/'; the next run names the zone of both times."""
    row = page.locator(f"{JOBS} [data-schedule='nightly-train']")
    path = row.locator(".jp-mlops-schedule-target .jp-mlops-path")
    drawn = path.evaluate(LINE_BREAKS_JS)
    assert drawn["text"] == TARGET
    assert drawn["before"], "the long target should wrap in the panel"  # else this checks nothing
    assert set(drawn["before"]) == {"/"}, f"{TARGET} breaks inside a name: {drawn}"
    assert f"0 2 * * * in {ZONE} time" in row.locator(".jp-mlops-schedule-when").inner_text()

    next_run = store.get("nightly-train").next_run
    browser_zone = page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")
    here = next_run.astimezone(ZoneInfo(browser_zone))
    there = next_run.astimezone(ZoneInfo(ZONE))
    assert (there.hour, there.minute) == (2, 0)
    text = row.locator(".jp-mlops-next").inner_text()
    shown = re.fullmatch(
        rf"next run: \S+ (?P<here>[\d:]+(?:\s?[AP]M)?) your time \((?P<there>[\d:]+(?:\s?[AP]M)?) in {ZONE}\), "
        r"(in \d+ hours?|in \d+ minutes?|tomorrow)",
        text,
    )
    assert shown, text
    assert _clock(shown["here"]) == (here.hour, here.minute), (text, here)
    assert _clock(shown["there"]) == (2, 0), text
    for part in (".jp-mlops-next", ".jp-mlops-schedule-target .jp-mlops-path", ".jp-mlops-schedule-when"):
        _readable(row.locator(part), part, theme)


def _dialog(page):
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=10_000)
    return dialog


def _close_dialog(page) -> None:
    page.locator(".jp-Dialog button", has_text="Cancel").click()
    page.wait_for_selector(".jp-Dialog", state="detached", timeout=10_000)


def _check_set_alias(page, theme: str, slug: str) -> None:
    """Names are checked as they are typed: OK is off, and one line says why."""
    page.locator(f"{MODEL} [data-version='2'] .jp-ToolbarButtonComponent", has_text="Set alias").click()
    dialog = _dialog(page)
    alias, ok = dialog.locator("input[name=alias]"), dialog.locator("button.jp-mod-accept")
    note = dialog.locator(".jp-mlops-field-note")
    assert ok.is_disabled()  # nothing typed yet
    assert "On tumour-classifier now: @challenger → v2, @champion → v1, @staging → v1." in dialog.inner_text()
    alias.press_sequentially("latest")
    assert ok.is_disabled()
    assert note.inner_text() == "@latest is reserved by MLflow (latest and v<N> name versions): choose another name."
    _readable(note, "the reason OK is off", theme)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"panel-set-alias-{slug}.png"))
    alias.press("Enter")  # Enter does not get past the rule either
    page.wait_for_timeout(300)
    assert dialog.locator("input[name=alias]").count() == 1 and "Set @latest?" not in page.inner_text("body")

    for typed, disabled, said in (
        ("V7", True, "@V7 is reserved by MLflow"),
        ("new model", True, "Only letters, digits, _ and - are allowed (not space)."),
        ("challenger", True, "v2 already holds @challenger."),
        ("champion", False, "Moves @champion from v1 to v2: models:/tumour-classifier@champion will load v2."),
        ("shadow-1", False, "Sets a new alias: models:/tumour-classifier@shadow-1 will load v2."),
    ):
        alias.fill("")
        alias.press_sequentially(typed)
        assert ok.is_disabled() is disabled, typed
        assert said in note.inner_text(), (typed, note.inner_text())
    _close_dialog(page)


def _check_promote_dialog(page, theme: str, slug: str) -> None:
    """Judged on the key metric by default; the alias to move is one of the model's."""
    page.locator(f"{MODEL} [data-version='2'] .jp-ToolbarButtonComponent", has_text="Promote").click()
    form = _dialog(page).locator("form.jp-mlops-promotion-form")
    metric = form.locator("select[name=metric]")
    assert metric.input_value() == "test_accuracy"
    assert metric.locator("option").all_inner_texts() == [
        "test_accuracy (key metric)",
        "RandomForestClassifier_score_X_test",
        "training_accuracy_score",
        "training_log_loss",
    ]
    assert not form.locator("input[name=lower]").is_checked()
    assert form.locator("select[name=from]").input_value() == "challenger"
    to = form.locator("select[name=to]")
    assert to.input_value() == "champion"
    assert to.locator("option").all_inner_texts() == ["@champion (v1)", "@staging (v1)"]
    metric.select_option("training_log_loss")  # a loss: lower is better, preset
    assert form.locator("input[name=lower]").is_checked()
    metric.select_option("test_accuracy")
    for part in ("select[name=metric]", "select[name=to]"):
        _readable(form.locator(part), part, theme)
    page.screenshot(path=str(ARTIFACTS / f"panel-promote-{slug}.png"))
    _close_dialog(page)


def test_panel_reads_at_a_glance_in_both_themes(tmp_path: Path, one_model_root):
    root, client, store = one_model_root
    with jupyterlab(root, tmp_path) as lab, browser_page(tmp_path, "panel") as page:
        page.set_viewport_size({"width": 1440, "height": 900})
        page.goto(lab.url("/lab"))
        page.wait_for_selector(PANEL_TAB, timeout=60_000)
        page.click(PANEL_TAB)
        page.wait_for_selector(MODEL, timeout=30_000)
        page.wait_for_selector(f"{JOBS} [data-schedule='nightly-train']", timeout=30_000)
        _assert_jobs_in_view(page, registry_fits=True)  # one model, folded: no space lost above Jobs

        page.locator(f"{MODEL} .jp-mlops-model-head").click()
        page.wait_for_selector(f"{MODEL} [data-version='1']", timeout=10_000)
        _assert_jobs_in_view(page, registry_fits=False)  # unfolded: its two versions scroll if need be

        for theme, slug, light in THEMES:
            set_theme(page, theme, light)
            _check_actions(page, theme)
            _check_schedule(page, store, theme)
            page.evaluate("document.querySelector('#mlops-nb-registry .jp-mlops-registry').scrollTop = 0")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"panel-{slug}.png"))
            _check_set_alias(page, theme, slug)
            _check_promote_dialog(page, theme, slug)

        # The dialog's defaults promote on the key metric: v2 (0.95) beats v1 (0.90).
        page.locator(f"{MODEL} [data-version='2'] .jp-ToolbarButtonComponent", has_text="Promote").click()
        _dialog(page).locator("button", has_text="Promote if better").click()
        page.wait_for_selector(".Toastify__toast:has-text('test_accuracy')", timeout=10_000)
        assert str(client.get_model_version_by_alias("tumour-classifier", "champion").version) == "2"
        page.wait_for_selector(f"{MODEL} [data-version='2'] [data-alias='champion']", timeout=10_000)
