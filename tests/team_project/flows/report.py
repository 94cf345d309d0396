"""The team's own report module (cxhealth's repository also has a flows/report.py)."""


def summarize(rows: int) -> str:
    return f"synced {rows} rows"
