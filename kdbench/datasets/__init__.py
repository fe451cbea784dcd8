"""The dataset catalogue: public datasets kdbench knows how to fetch, check and import.

- `catalogue`: one entry per dataset (source URL, SHA-256, format, filter, the statistics the import
  must reproduce);
- `location`: where fetched datasets live (`$KDBENCH_DATA`, else the user's cache) and what a run
  record may say about it;
- `fetch`: download (or a file placed by hand), verify, import, check, write atomically;
- `offline`: a suite's cells whose catalogue dataset is not here, named and set aside;
- `commands`: the `data list` and `data fetch` subcommands.

ml-100k is not in the catalogue: RecBole ships it (`data.BUNDLED_DATASETS`).
"""
