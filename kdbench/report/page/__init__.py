"""The interactive leaderboard page, `results/index.html` (`render`), from the leaderboard's rows and
the stored runs (`collect`) and tuning studies (`studies`)."""

from kdbench.report.page.render import PAGE_NAME, render_page, write_page

__all__ = ["PAGE_NAME", "render_page", "write_page"]
