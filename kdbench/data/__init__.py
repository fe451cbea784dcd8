"""The data: RecBole datasets and splits, imported files, and the catalogue of public datasets.

- `loading`: the RecBole bridge: configs (argv isolated), datasets, atomic files, `PreparedData`;
- `importer`: `data import`: the formats registry (users-dat, user-sequences) -> RecBole atomic
  files in file order;
- `catalogue`: one entry per public dataset (source URL, SHA-256, format, filter, the statistics the
  import must reproduce);
- `location`: where fetched datasets live (`$KDBENCH_DATA`, else the user's cache) and what a run
  record may say about it;
- `fetch`: download (or a file placed by hand), verify, import, check, write atomically;
- `offline`: a suite's cells whose catalogue dataset is not here, named and set aside.

ml-100k is not in the catalogue: RecBole ships it (`loading.BUNDLED_DATASETS`). The `data list` and
`data fetch` subcommands are `kdbench.cli.data`.
"""
