"""Inspector reports: exceedance history, data completeness, provincial indicators, exports."""
