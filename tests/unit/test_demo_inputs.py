"""``make demo CATALOG=... QA=...``: the user's files are validated before anything starts or any model is called."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from devstack import demo
from devstack.stack import REPO

REALISTIC_CATALOG = REPO / "include" / "data" / "catalog" / "realistic_catalog.txt"
REALISTIC_QA = REPO / "include" / "data" / "qa" / "realistic_test.json"


@pytest.fixture(autouse=True)
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    def started(*args: object, **kwargs: object) -> None:
        pytest.fail("the bake-off started although an input was bad")

    monkeypatch.setattr(demo, "_bake_off", started)
    monkeypatch.setattr(demo, "capture", started)


def test_the_realistic_pair_is_accepted() -> None:
    inputs = demo.check_inputs(REALISTIC_CATALOG, REALISTIC_QA)
    assert (inputs.products, inputs.questions) == (15, 30)
    assert inputs.first_question == json.loads(REALISTIC_QA.read_text())[0]["question"]


def test_a_bad_catalog_stops_the_demo_with_the_validators_messages(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "catalog.txt"
    bad.write_text("Name: Pump\nDescription: d\nSafety Instructions: s\nConfiguration: c\nOperation: o\n")
    with pytest.raises(SystemExit) as stopped:
        demo.main(["--catalog", str(bad), "--qa", str(REALISTIC_QA)])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"{bad} line 1: product \"Pump\" has no Safety_instructions section" in err
    assert 'line 3 "Safety Instructions: s" looks like a misspelt Safety_instructions header' in err
    assert "Nothing was started and no model was called" in err


def test_a_qa_set_about_other_products_stops_the_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    qa = tmp_path / "test.json"
    items = json.loads(REALISTIC_QA.read_text())[:2]
    items[1]["product_name"] = "Tarnwick AeroDry Compressed Air Dryer AD-304"  # a typo of AD-340
    qa.write_text(json.dumps(items))
    with pytest.raises(SystemExit) as stopped:
        demo.main(["--catalog", str(REALISTIC_CATALOG), "--qa", str(qa)])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and f"{qa} item 1: product_name" in err
    assert "did you mean 'Tarnwick AeroDry Compressed Air Dryer AD-340'?" in err


def test_a_users_catalog_without_a_qa_set_is_told_to_bring_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        demo.main(["--catalog", str(REALISTIC_CATALOG)])
    assert "give your own with QA=" in capsys.readouterr().err


def test_make_demo_passes_both_files_quoted() -> None:
    result = subprocess.run(["make", "-n", "--no-print-directory", "demo", "CATALOG=some/catalog.txt",
                             "QA=my qa.json"], cwd=REPO, capture_output=True, text=True, check=True)
    line = next(line for line in result.stdout.splitlines() if "devstack.demo" in line)
    assert line.endswith('-m devstack.demo --catalog "some/catalog.txt" --qa "my qa.json"'), line
