"""Dataset rows, reproducibility across workers, split disjointness, atomic writes, CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from datasets import DatasetDict, load_from_disk

from puzzles import cli, data

COLUMNS = {
    "prompt",
    "canvas",
    "frozen",
    "solver_order",
    "kind",
    "size",
    "difficulty",
    "n_clues",
    "technique_solvable",
    "clues",
}


@pytest.fixture(scope="module")
def sudoku4() -> tuple[DatasetDict, dict]:
    return data.build_sudoku(4, 150, 30, seed=3, workers=1, progress=False)


@pytest.fixture(scope="module")
def zebra_small() -> tuple[DatasetDict, dict]:
    return data.build_zebra([(3, 3), (3, 4)], 24, 6, seed=3, workers=1, progress=False)


def _check_rows(ds: DatasetDict) -> None:
    for split in ("train", "test"):
        assert set(ds[split].column_names) == COLUMNS
        for row in ds[split]:
            canvas = row["canvas"].split()
            assert len(row["frozen"]) == len(canvas)
            free = sorted(i for i, f in enumerate(row["frozen"]) if not f)
            assert sorted(row["solver_order"]) == free


def test_sudoku_rows(sudoku4) -> None:
    ds, stats = sudoku4
    assert ds["train"].num_rows == 150 and ds["test"].num_rows == 30
    assert stats["puzzles"] == 180 and stats["puzzles_per_s"] > 0
    _check_rows(ds)
    row = ds["train"][0]
    prompt, canvas = row["prompt"].split(), row["canvas"].split()
    assert len(prompt) == 16 and row["size"] == "4x4" and row["kind"] == "sudoku"
    assert row["frozen"] == [0 if t == "_" else 1 for t in prompt]
    assert all(p == "_" or p == c for p, c in zip(prompt, canvas))
    assert row["n_clues"] == sum(row["frozen"])


def test_zebra_rows(zebra_small) -> None:
    ds, _ = zebra_small
    _check_rows(ds)
    for row in ds["train"]:
        n, m = (int(x) for x in row["size"].split("x"))
        canvas = row["canvas"].split()
        assert len(canvas) == 36 and sum(row["frozen"]) == 36 - n * m
        assert len(json.loads(row["clues"])) == row["n_clues"]
        assert row["prompt"].split().count("CLUE_END") == row["n_clues"]


def test_house_canvas_rows_hold_each_attribute_value_per_house_sized_to_the_puzzle() -> None:
    ds, stats = data.build_zebra([(3, 4)], 12, 3, seed=3, workers=1, progress=False, house_canvas=True)
    entity, _ = data.build_zebra([(3, 4)], 12, 3, seed=3, workers=1, progress=False)
    assert stats["kind"] == "zebra-house"
    _check_rows(ds)
    for row, same in zip(ds["train"], entity["train"]):
        assert row["kind"] == "zebra-house" and row["size"] == "3x4" and row["prompt"] == same["prompt"]
        canvas = row["canvas"].split()
        assert len(canvas) == 12 and not any(row["frozen"])
        rows = [canvas[3 * r:3 * r + 3] for r in range(4)]
        assert all(sorted(r) == ["0", "1", "2"] for r in rows)  # each attribute a permutation over the houses
        # the entity canvas says where value v of attribute r lives; the house canvas says which value house h holds
        entity_canvas = same["canvas"].split()
        assert all(entity_canvas[(r - 1) * 6 + int(rows[r - 1][h])] == str(h) for r in range(1, 5) for h in range(3))


def test_train_test_disjoint_and_deduplicated(sudoku4) -> None:
    ds, stats = sudoku4
    train = set(ds["train"]["prompt"])
    test = set(ds["test"]["prompt"])
    assert len(train) == 150 and len(test) == 30
    assert not train & test
    # 4x4 minimal puzzles repeat often, so deduplication had to draw extra indices
    assert stats["indices_drawn"] > 180


def test_same_seed_same_data_and_workers_do_not_matter(sudoku4, zebra_small) -> None:
    ds, _ = sudoku4
    again, _ = data.build_sudoku(4, 150, 30, seed=3, workers=2, progress=False)
    for split in ("train", "test"):
        assert again[split].to_list() == ds[split].to_list()
    other, _ = data.build_sudoku(4, 150, 30, seed=4, workers=1, progress=False)
    assert other["train"]["prompt"] != ds["train"]["prompt"]

    zds, _ = zebra_small
    zagain, _ = data.build_zebra([(3, 3), (3, 4)], 24, 6, seed=3, workers=2, progress=False)
    assert zagain["train"].to_list() == zds["train"].to_list()
    assert zagain["test"].to_list() == zds["test"].to_list()


def test_save_atomic_roundtrip_and_no_partial_dir(tmp_path: Path, sudoku4, monkeypatch) -> None:
    ds, stats = sudoku4
    out = tmp_path / "sudoku4"
    seen_during_write: list[bool] = []
    original = DatasetDict.save_to_disk

    def spy(self, path, *a, **kw):
        seen_during_write.append(out.exists())
        assert Path(path).parent == out.parent and Path(path) != out
        return original(self, path, *a, **kw)

    monkeypatch.setattr(DatasetDict, "save_to_disk", spy)
    data.save_atomic(ds, out, metadata=stats)
    assert seen_during_write == [False]
    loaded = load_from_disk(str(out))
    assert loaded["test"].to_list() == ds["test"].to_list()
    assert json.loads((out / "generation.json").read_text())["puzzles"] == 180
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sudoku4"]
    with pytest.raises(FileExistsError):
        data.save_atomic(ds, out)


def test_save_atomic_failure_leaves_nothing(tmp_path: Path, sudoku4, monkeypatch) -> None:
    ds, _ = sudoku4
    out = tmp_path / "fresh"

    def explode(self, path, *a, **kw):
        Path(path, "partial.arrow").write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(DatasetDict, "save_to_disk", explode)
    with pytest.raises(OSError):
        data.save_atomic(ds, out)
    assert list(tmp_path.iterdir()) == []

    # an existing dataset survives a failed overwrite untouched
    monkeypatch.undo()
    data.save_atomic(ds, out)
    before = load_from_disk(str(out))["train"]["prompt"]
    monkeypatch.setattr(DatasetDict, "save_to_disk", explode)
    with pytest.raises(OSError):
        data.save_atomic(ds, out, overwrite=True)
    assert load_from_disk(str(out))["train"]["prompt"] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh"]


def test_results_files_are_replaced_whole(tmp_path: Path, monkeypatch) -> None:
    from puzzles.files import write_text_atomic

    target = write_text_atomic(tmp_path / "r" / "results.json", "old")
    monkeypatch.setattr("os.replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        write_text_atomic(target, "new")
    assert target.read_text() == "old"  # a failed write leaves the previous results whole
    monkeypatch.undo()
    write_text_atomic(target, "new")
    assert target.read_text() == "new" and [p.name for p in target.parent.iterdir()] == ["results.json"]


def test_cli_make_sudoku_and_zebra(tmp_path: Path, capsys) -> None:
    out = tmp_path / "s"
    rc = cli.main(["puzzles", "make", "sudoku", "--size", "6", "--n", "12", "--test-size", "3", "--seed", "1", "--out", str(out), "--quiet"])
    assert rc == 0
    ds = load_from_disk(str(out))
    assert ds["train"].num_rows == 12 and ds["test"].num_rows == 3
    assert ds["train"][0]["size"] == "6x6" and len(ds["train"][0]["canvas"].split()) == 36
    assert "puzzles/s" in capsys.readouterr().out

    zout = tmp_path / "z"
    rc = cli.main(["puzzles", "make", "zebra", "--houses", "3", "--attributes", "3,4", "--n", "5", "--test-size", "2", "--out", str(zout), "--quiet"])
    assert rc == 0
    z = load_from_disk(str(zout))
    assert set(z["train"]["size"]) <= {"3x3", "3x4"} and z["test"].num_rows == 2

    house = tmp_path / "house"
    assert cli.main(["puzzles", "make", "zebra", "--houses", "4", "--attributes", "3", "--n", "5", "--test-size", "2",
                     "--house-canvas", "--out", str(house), "--quiet"]) == 0
    h = load_from_disk(str(house))
    assert set(h["train"]["kind"]) == {"zebra-house"} and {len(c.split()) for c in h["train"]["canvas"]} == {12}

    screen = tmp_path / "lookup"
    rc = cli.main(["puzzles", "make", "zebra", "--houses", "3", "--attributes", "3,4", "--n", "5", "--test-size", "2",
                   "--answer-as-clues", "--out", str(screen), "--quiet"])
    assert rc == 0
    stats = json.loads((screen / "generation.json").read_text())
    assert stats["answer_as_clues"] is True
    for row in load_from_disk(str(screen))["train"]:
        houses, attributes = map(int, row["size"].split("x"))
        assert row["n_clues"] == houses * attributes == row["prompt"].split().count("=")


def test_answer_as_clues_splits_share_no_answer() -> None:
    # The clue set of an answer-as-clues puzzle is its answer; 80 draws from 3x3's 216 answers repeat some.
    ds, _ = data.build_zebra([(3, 3)], 60, 20, seed=0, workers=1, progress=False, answer_as_clues=True)
    train, test = ds["train"]["canvas"], ds["test"]["canvas"]
    assert len(set(train)) == len(train) and len(set(test)) == len(test)
    assert not set(train) & set(test)
    with pytest.raises(ValueError, match="only 216"):
        data.build_zebra([(3, 3)], 200, 17, seed=0, workers=1, progress=False, answer_as_clues=True)


def test_build_rejects_split_sizes_it_cannot_make() -> None:
    with pytest.raises(ValueError, match="n_train must be an integer >= 1, got 0"):
        data.build_sudoku(4, 0, 3, seed=0, progress=False)
    with pytest.raises(ValueError, match="n_test must be an integer >= 1, got -1"):
        data.build_zebra([(3, 3)], 5, -1, seed=0, progress=False)
    with pytest.raises(ValueError, match="n_test must be an integer >= 1, got 0"):
        data.build_sudoku(4, 5, 0, seed=0, progress=False)


# required arguments of each command, so that only the flag under test is wrong
REQUIRED = {
    "make sudoku": ["--n", "5", "--out", "out"],
    "make zebra": ["--n", "5", "--out", "out"],
    "eval": ["--model", "m", "--data", "d"],
    "probe": ["--model", "m", "--data", "d"],
    "run": ["--out", "out"],  # examples/sudoku.py and examples/zebra.py
}


@pytest.mark.parametrize(
    "command, flags, flag, allowed",
    [
        ("make zebra", ["--houses", ""], "--houses", "integers in 2..6"),
        ("make zebra", ["--houses", "x"], "--houses", "integers in 2..6"),
        ("make zebra", ["--attributes", "3,7"], "--attributes", "integers in 2..6"),
        ("make sudoku", ["--n", "0"], "--n", "integer >= 1"),
        ("make sudoku", ["--n", "-5", "--test-size", "3"], "--n", "integer >= 1"),
        ("make sudoku", ["--test-size", "-1"], "--test-size", "integer >= 1"),
        ("make zebra", ["--test-size", "0"], "--test-size", "integer >= 1"),
        ("make sudoku", ["--workers", "0"], "--workers", "integer >= 1"),
        ("eval", ["--batch-size", "0"], "--batch-size", "integer >= 1"),
        ("eval", ["--num-rounds", ""], "--num-rounds", "integers >= 0"),
        ("eval", ["--num-rounds", "1,-1"], "--num-rounds", "integers >= 0"),
        ("eval", ["--limit", "-295"], "--limit", "integer >= 1"),
        ("eval", ["--easy-first", "entropy"], "--easy-first", "probability"),
        ("eval", ["--easy-first-tau", "1.5"], "--easy-first-tau", "one fraction in [0, 1]"),
        ("eval", ["--easy-first-tau", "0.1,0.2"], "--easy-first-tau", "one fraction in [0, 1]"),
        ("eval", ["--easy-first-rounds", "0,3"], "--easy-first-rounds", "integers >= 1"),
        ("eval", ["--temperature", "0"], "--temperature", "a number > 0"),
        ("eval", ["--temperature", "inf"], "--temperature", "a number > 0"),
        ("probe", ["--limit", "0"], "--limit", "integer >= 1"),
        ("run", ["--eval-limit", "-295"], "--eval-limit", "integer >= 1"),
        ("run", ["--n-train", "0"], "--n-train", "integer >= 1"),
    ],
)
def test_bad_numbers_are_refused_naming_the_flag_and_allowed_values(
    command, flags, flag, allowed, capsys, tmp_path: Path, monkeypatch
) -> None:
    from puzzles.run import add_run_arguments

    monkeypatch.chdir(tmp_path)  # a flag that slipped through would write "out" here
    with pytest.raises(SystemExit) as exit_info:
        if command == "run":
            parser = argparse.ArgumentParser()
            add_run_arguments(parser, "config.json")
            parser.parse_args([*REQUIRED[command], *flags])
        else:
            # the flag under test comes last: argparse keeps the last value of a repeated flag
            cli.main(["puzzles", *command.split(), *REQUIRED[command], *flags])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"argument {flag}:" in error and allowed in error
