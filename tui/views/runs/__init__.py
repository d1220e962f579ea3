"""The Runs view, split into its column model (columns.py), filter language (filter.py), table widget (table.py)
and the view (view.py)."""
from tui.views.runs.filter import RunFilter
from tui.views.runs.table import RunsTable
from tui.views.runs.view import RunsView

__all__ = ["RunFilter", "RunsTable", "RunsView"]
