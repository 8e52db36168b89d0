"""Names vulture (``vulture quantrac .vulture_whitelist.py --min-confidence 60``) reports as
unused that are used: each group says by what. Run by ``./quickstart test``.

Regenerate candidates with ``vulture quantrac --min-confidence 60 --make-whitelist`` and check
each one before adding it here; whatever is truly unused is deleted instead.
"""

# ruff: noqa
# mypy: ignore-errors
_ = object()

# FastAPI routes and exception handlers, registered by decorator.
api_error, http_error, invalid, bad_value, unexpected, docs, healthz, prometheus
create_lock, lift_lock, create_correction, exceedances, indicators
i18n, logout, change_password, station_detail, alert_stream, acknowledge, assign, assignees
aqi_current, aqi_history, create_user, change_user, registry_file, replace_registry
Inspector  # FastAPI dependency alias (Annotated), used in route signatures

# gmqtt callbacks assigned on the client and their positional arguments.
_.on_connect, _.on_disconnect, _.on_subscribe, rc, packet, props

# Read by other code through attributes set on objects vulture cannot follow.
_.caught_up  # alert service readiness, read by /healthz and tests
_.should_exit  # uvicorn.Server stop flag
_.prec  # decimal context precision
_.font, _.alignment, _.number_format, _.freeze_panes, _.legend, _.height  # openpyxl
_.footer  # fpdf2 calls FPDF.footer on every page

# Enum members and dataclass fields that are part of the data (JSON, API, reports).
INFO, OPEN
health_vi, health_en, category_vi, category_en, colour_rgb
base_maximum, base_minimum, moved_to, _.sufficient
# alerts/store.py AlertRow: the columns of alerts, read by name (AlertRow.columns, API JSON).
updated_at, max_value, acknowledged_at, acknowledged_by, resolved_at, resolved_by, resolution
assigned_at, assigned_by

# Public helpers with their own unit tests (documented API of the module).
_.restore, _.restart, _.regime_on, _.raise_for_problems
correct_to_o2_reference, load_regulation_file, expected_per_day, digest_rows
generate, run_fuzz, CRITERIA, LOCKED_SQLSTATE

# pydantic: validators run by decorator, model_config and settings hooks read by pydantic itself.
model_config, settings_customise_sources, env_settings, dotenv_settings, file_secret_settings
_.clause_provenance  # read by reports' penalty lines and tests
_.exceedance, _.out_of_range  # pydantic fields of alerts.yaml rules, read by model_dump
_.extends  # pydantic field of a table supplement: checked; the base is found before, in the raw file
colour_vi, colour_en  # AQI table categories (pydantic fields): checked; screens use rgb/hex
# alerts/engine.py ActiveSet: set methods overridden so that no way of changing it loses its count.
_.remove, _.difference_update, _.intersection_update, _.symmetric_difference_update
