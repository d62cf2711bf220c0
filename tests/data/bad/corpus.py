"""The bad-input corpus: ``manifest.json`` lists every case; large cases are generated here, never committed.

A case is either a committed file (``file``, relative to this folder) or a ``generator`` whose bytes are
written at test time (``materialize`` puts them in the test's tmp_path). Expected outcomes:

- ``accepted`` with ``why`` (one line: why the input is valid) and ``products`` / ``items`` (how many);
  optional ``same_as`` (another case that must parse to identical products/items) and ``verbatim``
  (texts that must reach a product section / QA field unchanged: data, not instructions).
- ``rejected`` with ``rule`` and, where meaningful, ``line`` (catalog: the issue's line; QA: the JSON line)
  or ``item`` (QA: the index of the offending item), plus ``says`` (a fragment of the message).
  Catalog rules are :class:`tailor.catalog.CatalogIssue` ``rule`` strings. ``tailor.qa`` has no rule ids:
  a QA ``rule`` is the fixed phrase its message uses for that check (e.g. ``invalid JSON``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"
MiB = 1024 * 1024
CATALOG_MAX_BYTES = 5 * MiB  # tailor.catalog.DEFAULT_MAX_BYTES and catalog.max_bytes in config/defaults.yaml


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # "catalog" | "qa"
    input: str
    expect: str  # "accepted" | "rejected"
    file: str | None = None
    generator: str | None = None
    why: str | None = None
    rule: str | None = None
    line: int | None = None
    item: int | None = None
    says: str | None = None
    products: int | None = None
    items: int | None = None
    same_as: str | None = None
    verbatim: dict[str, Any] = field(default_factory=dict)

    @property
    def filename(self) -> str:
        """The file's name (generated cases: ``<id>.txt`` / ``<id>.json``)."""
        if self.file:
            return Path(self.file).name
        return f"{self.id}.{'txt' if self.kind == 'catalog' else 'json'}"


def cases(kind: str | None = None) -> list[Case]:
    raw = json.loads(MANIFEST.read_text(encoding="utf-8"))["cases"]
    return [Case(**entry) for entry in raw if kind is None or entry["kind"] == kind]


def case(case_id: str) -> Case:
    return next(c for c in cases() if c.id == case_id)


# --- generators of the large cases ----------------------------------------------------------------------------


def _product(name: str, detail: str = "") -> str:
    return (
        f"Name: {name}\n"
        f"Description: {name} is a bench-top test fixture{detail}.\n"
        f"Safety_instructions: Disconnect {name} from the mains before opening the cover.\n"
        "Configuration: 230 V single phase, 2 A.\n"
        "Operation: Switch on, wait for the green lamp, then start the cycle.\n\n"
    )


def catalog_products(count: int) -> bytes:
    return "".join(_product(f"Test Fixture TF-{i:05d}") for i in range(count)).encode()


def catalog_same_product(count: int) -> bytes:
    return (_product("Test Fixture TF-00000") * count).encode()


def catalog_of_size(size: int) -> bytes:
    """One valid product whose single-line description pads the file to exactly ``size`` bytes."""
    head = "Name: Padded Fixture PF-1\nDescription: "
    tail = (
        "\nSafety_instructions: Disconnect it from the mains before opening the cover.\n"
        "Configuration: 230 V single phase, 2 A.\nOperation: Switch on and start the cycle.\n"
    )
    filler = size - len(head.encode()) - len(tail.encode())
    return (head + ("lorem ipsum " * (filler // 12 + 1))[:filler] + tail).encode()


def catalog_many_products_of_size(size: int) -> bytes:
    """Valid, distinct products repeated up to ``size`` bytes (cut at a product boundary, then padded)."""
    one = len(_product("Test Fixture TF-000000").encode())
    body = "".join(_product(f"Test Fixture TF-{i:06d}") for i in range(size // one)).encode()
    return body + b"\n" * (size - len(body))


def qa_items(count: int) -> bytes:
    items = [
        {"product_name": f"Test Fixture TF-{i:05d}", "question": f"What is the supply current of TF-{i:05d}?",
         "answer": "It draws 2 A at 230 V."}
        for i in range(count)
    ]
    return json.dumps(items, indent=1).encode()


GENERATORS: dict[str, Callable[[], bytes]] = {
    "catalog_50mb": lambda: catalog_many_products_of_size(50 * MiB),
    "catalog_10k_products": lambda: catalog_products(10_000),
    "catalog_10k_same_product": lambda: catalog_same_product(10_000),
    "catalog_at_size_limit": lambda: catalog_of_size(CATALOG_MAX_BYTES),
    "catalog_one_byte_over_limit": lambda: catalog_of_size(CATALOG_MAX_BYTES + 1),
    "name_20000_chars": lambda: _product("Mixer " * 3333 + "VM").encode(),
    "qa_10k_items": lambda: qa_items(10_000),
    "qa_deep_nesting": lambda: b"[" * 100_000 + b"]" * 100_000,
}


def data_of(c: Case) -> bytes:
    """The case's bytes (generated ones are built in memory: up to 50 MiB)."""
    if c.generator:
        return GENERATORS[c.generator]()
    assert c.file is not None, c
    return (HERE / c.file).read_bytes()


def materialize(c: Case, tmp_dir: Path) -> Path:
    """A path to the case's file: the committed file, or the generated bytes written under ``tmp_dir``."""
    if not c.generator:
        return HERE / str(c.file)
    path = tmp_dir / c.filename
    path.write_bytes(GENERATORS[c.generator]())
    return path
