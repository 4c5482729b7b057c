"""The stored suites are the contracts the ingest flow uses: current, explained, passing clean data and
failing each kind of bad batch with the column, the expectation and the rows named."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from data_contracts.suite import ContractPolicy, build_suite, load_suite, save_suite, suite_path
from data_contracts.validate import ContractChecker, read_raw
from genre.core.datasets import BUILTIN, get_spec, load_split, resolve_file

SPEC = get_spec("compas")


@pytest.fixture(scope="module")
def checker() -> ContractChecker:
    return ContractChecker(load_suite(suite_path("compas")), SPEC)


@pytest.fixture(scope="module")
def raw_test() -> pd.DataFrame:
    return read_raw(resolve_file(SPEC, "test"))


def _failed(report) -> dict[tuple[str | None, str], dict]:
    return {(f["column"], f["expectation"]): f for f in report.failures}


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_stored_suite_is_what_the_build_command_writes(name, tmp_path):
    spec = get_spec(name)
    rebuilt = save_suite(build_suite(spec, load_split(spec, "train"), ContractPolicy()), tmp_path / f"{name}.json")
    assert json.loads(rebuilt.read_text()) == json.loads(suite_path(name).read_text()), (
        f"data_contracts/{name}.json is stale: run `python -m data_contracts build`")


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_every_expectation_states_its_intent_and_the_column_set_is_exact(name):
    suite = load_suite(suite_path(name))
    assert all(e.meta.get("intent") for e in suite.expectations)
    columns = [e for e in suite.expectations if e.expectation_type == "expect_table_columns_to_match_set"]
    assert len(columns) == 1 and columns[0].exact_match and list(columns[0].column_set) == get_spec(name).columns


def test_held_out_split_passes_its_contract(checker, raw_test):
    report = checker.check(raw_test, "compas_test.csv")
    assert report.success, report.summary()


def test_each_kind_of_bad_cell_is_reported_with_column_and_row(checker, raw_test):
    bad = raw_test.head(100).copy()
    bad.loc[3, "age"] = ""  # null
    bad.loc[5, "priors_count"] = "abc"  # text in a numeric column
    bad.loc[7, "race"] = "Martian"  # unknown category
    bad.loc[9, "length_of_stay"] = "5000"  # out of range (training max 799, tolerance 10 %)
    bad.loc[11, "score"] = "2"  # target outside {0, 1}
    report = checker.check(bad, "bad.csv")
    assert not report.success
    failed = _failed(report)
    expected = {
        ("age", "expect_column_values_to_not_be_null"): (4, "empty"),
        ("priors_count", "expect_column_values_to_not_be_null"): (6, "'abc' is not a number"),
        ("race", "expect_column_values_to_be_in_set"): (8, "'Martian'"),
        ("length_of_stay", "expect_column_values_to_be_between"): (10, "'5000'"),
        ("score", "expect_column_values_to_be_in_set"): (12, None),
    }
    assert set(expected) <= set(failed), report.summary()
    for key, (row, value) in expected.items():
        assert failed[key]["unexpected_count"] == 1
        assert failed[key]["examples"][0]["row"] == row
        if value:
            assert failed[key]["examples"][0]["value"] == value
    assert "row 6 (line 7): 'abc' is not a number" in report.summary()


def test_value_just_inside_the_tolerance_passes(checker, raw_test):
    ok = raw_test.head(100).copy()
    ok.loc[0, "length_of_stay"] = "870"  # beyond the training max 799, inside 799 + 10 % of 800
    assert checker.check(ok, "ok.csv").success


def test_missing_and_extra_columns_fail_the_column_set(checker, raw_test):
    report = checker.check(raw_test.head(100).drop(columns=["sex"]).assign(note="x"), "cols.csv")
    failed = _failed(report)
    details = failed[(None, "expect_table_columns_to_match_set")]["details"]["mismatched"]
    assert not report.success and details == {"missing": ["sex"], "unexpected": ["note"]}


def test_a_file_appended_twice_fails_the_duplicate_share(checker, raw_test):
    doubled = pd.concat([raw_test.head(200)] * 2, ignore_index=True)
    assert (None, "expect_compound_columns_to_be_unique") in _failed(checker.check(doubled, "twice.csv"))


def test_too_few_rows_fail(checker, raw_test):
    assert (None, "expect_table_row_count_to_be_between") in _failed(checker.check(raw_test.head(5), "short.csv"))


def test_fraction_in_an_integer_feature_fails_with_file_row_and_column(checker, raw_test):
    bad = raw_test.head(100).copy()
    bad.loc[3, "age"] = "33.5"
    report = checker.check(bad, "frac.csv")
    assert not report.success
    (failure,) = report.failures
    assert failure["column"] == "age" and failure["examples"][0]["row"] == 4
    assert "frac.csv" in failure["examples"][0]["value"] and "whole number" in failure["examples"][0]["value"]
