"""quantrac alert engine (QCVN limits, watchdogs, alert lifecycle): see issue 3; not built yet."""
