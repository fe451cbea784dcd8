"""The catalogue: the public datasets of the KD-for-recommendation literature that kdbench fetches.

Each entry pins one file: its public URL (a raw GitHub URL at a fixed commit, so the bytes cannot
change under the same address), its SHA-256, the importer that reads it (`kdbench.data.importer.FORMATS`),
the user filter, and the statistics the import must give (users, items, interactions: those the
papers report). A fetch that gives other bytes or other statistics is refused.

The catalogue's names shadow RecBole's downloadable datasets of the same name (`amazon-beauty`,
`yelp`): without `--data-path`, kdbench reads these names from its data folder
(`kdbench.data.location`), never from RecBole's download.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdbench.data.importer import USER_SEQUENCES, USERS_DAT
from kdbench.registry import Registry

RAW = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class CatalogueEntry:
    """One dataset: where its file is, what it must hash to, how to import it, what it must give.

    `time_ordered`: each user's items are listed in time order, so the import's positions order them
    in time (the sequential family's leave-one-out and the `ordered` protocols mean what they say);
    False where the order is not time (citeulike-t lists item ids in ascending order)."""

    name: str
    summary: str
    url: str
    sha256: str
    filename: str
    format: str
    min_user_interactions: int
    users: int
    items: int
    interactions: int
    time_ordered: bool
    reference: str  # the papers that report these statistics / this preprocessing

    @property
    def statistics(self) -> tuple[int, int, int]:
        return self.users, self.items, self.interactions

    @property
    def filter(self) -> str:
        """The filter as the `data import` flag that applies it ('none' without one)."""
        if not self.min_user_interactions:
            return "none"
        return f"--min-user-interactions {self.min_user_interactions}"


CATALOGUE: Registry[CatalogueEntry] = Registry("catalogue dataset")


def _add(entry: CatalogueEntry) -> None:
    CATALOGUE.register(entry.name)(entry)


_add(CatalogueEntry(
    name="citeulike-t",
    summary="CiteULike-t users x articles, users with >= 5 items (sparse: 0.10% dense)",
    url=f"{RAW}/changun/CollMetric/5e0604d50ddaf2f0f338bde1ce5e4cade51ac144/citeulike-t/users.dat",
    sha256="02d5d429b2c0362e0ed79f6ef204666b4092563d21493abf4dfb521e8a7078bf",
    filename="users.dat", format=USERS_DAT, min_user_interactions=5,
    users=5_219, items=25_181, interactions=125_580, time_ordered=False,
    reference="Wang, Chen & Li, IJCAI 2013 (citeulike-t); the statistics of woriazzc/KDs and RCE-KD (2025)",
))
_add(CatalogueEntry(
    name="foursquare",
    summary="Foursquare check-ins, users x venues, every user with >= 5",
    url=f"{RAW}/hieunm44/hyperkdma/f5bf3b219f7d3e39b5278ad62f16576fc52c8e8f/datasets/Foursquare/users.dat",
    sha256="808c42ee414bdef5990e4f61143e2e02f1d266c59b303f37b4050a99d2536c78",
    filename="users.dat", format=USERS_DAT, min_user_interactions=0,
    users=24_941, items=28_593, interactions=717_086, time_ordered=False,
    reference="the DE-RRD / HyperKDMA line of KD papers (hieunm44/hyperkdma)",
))
_add(CatalogueEntry(
    name="amazon-beauty",
    summary="Amazon Beauty reviews, 5-core, each user's items in time order",
    url=f"{RAW}/salesforce/ICLRec/4afb54a036ebbf4166ed5858122d89c0642251a7/data/Beauty.txt",
    sha256="226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
    filename="Beauty.txt", format=USER_SEQUENCES, min_user_interactions=0,
    users=22_363, items=12_101, interactions=198_502, time_ordered=True,
    reference="McAuley et al. 2015; the S3-Rec / ICLRec preprocessing (salesforce/ICLRec)",
))
_add(CatalogueEntry(
    name="yelp",
    summary="Yelp business reviews, 5-core, each user's items in time order (11,830 repeat visits)",
    url=f"{RAW}/salesforce/ICLRec/4afb54a036ebbf4166ed5858122d89c0642251a7/data/Yelp.txt",
    sha256="724b219106b81dd2349027da997334ddb6da9fe2f152ad6e0d97a93170f7caed",
    filename="Yelp.txt", format=USER_SEQUENCES, min_user_interactions=0,
    users=30_431, items=20_033, interactions=316_354, time_ordered=True,
    reference="the S3-Rec / ICLRec preprocessing of the Yelp dataset (salesforce/ICLRec)",
))
