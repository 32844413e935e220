"""Experiments behind `azsim experiment NAME` (issue 7 and later): each module has
``run(quick=False, **options) -> dict`` (JSON-serializable results) and ``format_tables(result)
-> str`` (the tables the command prints)."""
