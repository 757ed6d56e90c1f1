from __future__ import annotations

from conftest import ORDERS

import lake


def lake_with_settings(tmp_path, **catalog):
    root = tmp_path / "lake"
    root.mkdir(parents=True, exist_ok=True)
    (root / "lake.toml").write_text(
        "[catalog]\n" + "".join(f"{k} = {v}\n" for k, v in catalog.items())
    )
    lk = lake.connect(root)
    lk.catalog.create_database("sales")
    lk.catalog.create_table("sales.orders", ORDERS)
    return lk
