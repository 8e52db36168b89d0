"""Sealed evidence: digests of reports and of the readings behind them, locked periods and the
audited correction path."""
