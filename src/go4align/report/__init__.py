"""Reports from results files: tables, plots, Markdown and self-contained HTML."""
