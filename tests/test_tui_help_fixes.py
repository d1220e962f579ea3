"""The keys a user sees at 80x24: `?` leads with the current view's own keys (enter on the Runs table says it opens
the run detail; DataTable's cursor and paging keys come last), the footer never cuts a key and always shows `?`, and
the run detail's tabs have keys of their own ([ and ]) that the footer and `?` name."""
from __future__ import annotations

import pytest

from conftest_tui import make_app, make_store, run_async, settle

SMALL = (80, 24)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("help") / "runs", experiments=2, runs_per_experiment=3,
                      points_per_run=200)


def screen_lines(app) -> list[str]:
    """The terminal's lines as the user sees them (the compositor's strips, composited from every layer)."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def help_rows(app) -> list[str]:
    """The rows inside the help box, stripped of its border."""
    rows = []
    for line in screen_lines(app):
        if "│" in line:
            inner = line.split("│")[1].strip()
            if inner:
                rows.append(inner)
    return rows


async def show(pilot, key: str) -> None:
    await pilot.press(key)
    await settle(pilot)


@run_async
async def test_help_on_the_runs_view_leads_with_the_views_own_keys_at_80x24(store):
    app = make_app(store)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        rows = help_rows(app)
        first = "\n".join(rows[:12])
        for description in ("Select", "Stop", "Resume", "Sort", "Compare", "detail"):
            assert description in first, (description, rows)
        enter = [row for row in rows if row.split()[0] == "enter"]
        assert enter and "detail" in enter[0] and "Select" not in enter[0], rows
        if any("ctrl+pageup" in row for row in rows):
            assert rows.index(next(r for r in rows if "ctrl+pageup" in r)) > rows.index(enter[0])
        assert "everywhere" in "\n".join(rows).lower()


def footer_line(app) -> str:
    return screen_lines(app)[-1]


def footer_keys(app) -> list[str]:
    """"key description" of each key the footer shows."""
    from textual.widgets._footer import FooterKey

    return [f"{key.key_display} {key.description}".strip() for key in app.screen.query(FooterKey)
            if key.display and "-command-palette" not in key.classes]


@pytest.mark.parametrize("tab", ["1", "2", "3", "4", "7"])
@run_async
async def test_the_footer_at_80_columns_shows_question_mark_and_cuts_no_key(store, tab):
    app = make_app(store)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await show(pilot, tab)
        line = footer_line(app)
        assert "? Keys" in line, line
        keys = footer_keys(app)
        assert len(keys) >= 3, keys
        for key in keys:
            assert key in line, (key, line)  # shown whole, not cut off by the width or the palette key
        assert "^p palette" in line


@run_async
async def test_the_curves_footer_leads_with_the_curves_own_keys(store):
    app = make_app(store)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await show(pilot, "2")
        line = footer_line(app)
        for key in ("x X axis", "l Log y", "m Smoothing", "f Full y range"):
            assert key in line, line


@run_async
async def test_run_detail_tabs_switch_with_brackets_and_the_footer_and_help_say_so(store):
    app = make_app(store)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        from textual.widgets import TabbedContent

        assert type(app.screen).__name__ == "RunDetailScreen"
        tabs = app.screen.query_one("#detail-tabs", TabbedContent)
        assert tabs.active == "detail-overview"
        line = footer_line(app)
        assert "[ Prev tab" in line and "] Next tab" in line and "? Keys" in line, line
        for expected in ("detail-config", "detail-net", "detail-confusion", "detail-log", "detail-overview"):
            await pilot.press("right_square_bracket")
            await pilot.pause()
            assert tabs.active == expected
        await pilot.press("left_square_bracket")
        await pilot.pause()
        assert tabs.active == "detail-log"
        await pilot.press("question_mark")
        await pilot.pause()
        rows = help_rows(app)
        assert any(row.startswith("[") and "Prev tab" in row for row in rows[:8]), rows
        assert any(row.startswith("]") and "Next tab" in row for row in rows[:8]), rows
