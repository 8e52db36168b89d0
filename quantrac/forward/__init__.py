"""``quantrac forward``: stored readings sent upstream as Circular 10/2021 files."""
