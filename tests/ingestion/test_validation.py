"""Validation: coercion, exact counts per rule, duplicates, references, schema breaks, volume and
freshness anomalies, the gate, and the invariant that no row is ever dropped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tideline.core.errors import ContractError, QualityGateFailed
from tideline.ingestion.contracts import Column, Contract, load_contracts
from tideline.ingestion.validation import validate
from tideline.ingestion.validation.anomalies import DatasetStats

NOW = datetime(2026, 7, 2, 12, 0, tzinfo=UTC)

TRANSACTIONS = Contract.from_yaml("""
dataset: transactions
key: [transaction_id]
columns:
  - {name: transaction_id, type: string, regex: "t[0-9]+"}
  - {name: customer_id, type: string, nullable: false}
  - {name: amount, type: float, min: 0, max: 1000}
  - {name: quantity, type: int, min: 1}
  - {name: ts, type: timestamp, nullable: false, not_in_future: true}
  - {name: channel, type: string, allowed: [web, store, app]}
  - {name: email, type: string, regex: "[^@\\\\s]+@[^@\\\\s]+\\\\.[a-z]+"}
references:
  - {column: customer_id, dataset: customers, ref_column: customer_id}
freshness: {column: ts, max_age: 2d}
""")
CUSTOMERS = {"customers": {"c1", "c2", "c3"}}


def tx(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "transaction_id": "t1", "customer_id": "c1", "amount": "12.50", "quantity": "1",
        "ts": "2026-07-01T10:00:00Z", "channel": "web", "email": "a@x.com",
    }
    row.update(overrides)
    return row


def one_column(column: dict, values: list) -> tuple[Contract, pd.DataFrame]:
    contract = Contract.from_dict({"dataset": "d", "columns": [{"name": "v", **column}]})
    return contract, pd.DataFrame({"v": pd.Series(values, dtype=object)})


def failures(result) -> dict[str, int]:
    """`rule:column` -> failed rows, only the checks that failed."""
    rules = result.rules[result.rules.failed_rows > 0]
    return {f"{r}:{c}" if c else r: int(n)
            for r, c, n in zip(rules.rule, rules.column, rules.failed_rows, strict=True)}


# --------------------------------------------------------------------------------- coercion


@pytest.mark.parametrize(("column", "raw", "expected"), [
    ({"type": "float"}, "12.50", 12.5),
    ({"type": "float"}, " 3 ", 3.0),
    ({"type": "float"}, "1e3", 1000.0),
    ({"type": "float"}, 7, 7.0),
    ({"type": "int"}, "2.0", 2),
    ({"type": "int"}, "9007199254740993", 9007199254740993),  # 2**53 + 1, kept exact
    ({"type": "bool"}, "Yes", True),
    ({"type": "bool"}, "0", False),
    ({"type": "string"}, 12, "12"),
    ({"type": "timestamp"}, "2026-07-01T10:00:00Z", pd.Timestamp("2026-07-01 10:00", tz="UTC")),
    ({"type": "timestamp"}, "2026-07-01", pd.Timestamp("2026-07-01", tz="UTC")),
    ({"type": "timestamp"}, "07/01/2026", pd.Timestamp("2026-07-01", tz="UTC")),
    ({"type": "timestamp"}, "2026-07-01 12:00:00+02:00",
     pd.Timestamp("2026-07-01 10:00", tz="UTC")),
    ({"type": "timestamp"}, datetime(2026, 7, 1, 10), pd.Timestamp("2026-07-01 10:00", tz="UTC")),
    ({"type": "date"}, "07/01/2026", pd.Timestamp("2026-07-01")),
    ({"type": "date"}, "2026-07-01", pd.Timestamp("2026-07-01")),
])
def test_coerces_present_values_to_the_declared_type(column: dict, raw: object,
                                                     expected: object) -> None:
    contract, frame = one_column(column, [raw])
    result = validate(frame, contract, now=NOW)
    assert len(result.quarantine) == 0
    assert result.clean["v"].iloc[0] == expected


@pytest.mark.parametrize(("column", "raw"), [
    ({"type": "float"}, "12,5O"),
    ({"type": "float"}, "inf"),
    ({"type": "int"}, "2.5"),
    ({"type": "int"}, "9999999999999999999"),  # beyond int64
    ({"type": "bool"}, "maybe"),
    ({"type": "timestamp"}, "2026-02-30T10:00:00Z"),
    ({"type": "timestamp"}, "yesterday"),
    ({"type": "date"}, "2026-07-01T10:00:00Z"),  # a time of day is not a date
])
def test_present_but_unparseable_is_a_type_failure_naming_column_and_value(
        column: dict, raw: object) -> None:
    contract, frame = one_column(column, [raw])
    result = validate(frame, contract, now=NOW)
    assert len(result.clean) == 0
    assert result.quarantine["_rules"].tolist() == ["type:v"]
    article = "an" if column["type"] == "int" else "a"
    assert result.quarantine["_reason"].iloc[0] == f"v: '{raw}' is not {article} {column['type']}"


@pytest.mark.parametrize("raw", [None, np.nan, "", "  ", "NULL", "NaN", "n/a"])
def test_missing_blank_and_null_tokens_are_null_not_type_failures(raw: object) -> None:
    contract, frame = one_column({"type": "float"}, [raw, "1.5"])
    result = validate(frame, contract, now=NOW)
    assert len(result.quarantine) == 0
    assert result.clean["v"].isna().tolist() == [True, False]
    assert result.stats.null_rates == {"v": 0.5}


@pytest.mark.parametrize(("column", "values", "dtype", "expected"), [
    ({"format": "unix_s"}, ["1782900000", " 1782900000.25 ", "-1.5"], object,
     ["2026-07-01 10:00:00", "2026-07-01 10:00:00.25", "1969-12-31 23:59:58.5"]),
    ({"format": "unix_ms"}, [1782900000123, 1782900000124], "int64",
     ["2026-07-01 10:00:00.123", "2026-07-01 10:00:00.124"]),
    ({"format": "unix_us"}, [1782900000123456.0, np.nan], "float64",
     ["2026-07-01 10:00:00.123456", None]),
    ({"format": "unix_ns"}, ["1782900000123456789"], object,  # beyond 2**53: exact
     ["2026-07-01 10:00:00.123456789"]),
    ({"format": "%d.%m.%Y %H:%M"}, ["01.07.2026 10:00", "NULL"], object,
     ["2026-07-01 10:00:00", None]),
    ({"format": "%a, %d %b %Y %H:%M:%S %z"}, ["Wed, 01 Jul 2026 12:00:00 +0200"], object,
     ["2026-07-01 10:00:00"]),
    ({"type": "date", "format": "unix_s"}, ["1782864000"], object, ["2026-07-01"]),
])
def test_a_declared_format_reads_epochs_and_patterns(column: dict, values: list, dtype: str,
                                                     expected: list) -> None:
    contract, frame = one_column({"type": "timestamp", **column}, values)
    frame["v"] = frame["v"].astype(dtype)
    result = validate(frame, contract, now=NOW)
    assert len(result.quarantine) == 0
    utc = column.get("type", "timestamp") == "timestamp"
    assert result.clean["v"].tolist() == [
        pd.NaT if value is None else pd.Timestamp(value, tz="UTC" if utc else None)
        for value in expected]


@pytest.mark.parametrize(("column", "raw"), [
    ({"format": "unix_s"}, "1e30"),  # beyond 2262
    ({"format": "unix_s"}, "yesterday"),
    ({"format": "unix_ms"}, "2026-07-01T10:00:00Z"),  # ISO is not the declared format
    ({"format": "%d.%m.%Y"}, "2026-07-01"),
    ({"type": "date", "format": "unix_s"}, "1782900000"),  # 10:00, not a date
])
def test_a_value_not_in_the_declared_format_is_a_type_failure(column: dict, raw: str) -> None:
    contract, frame = one_column({"type": "timestamp", **column}, [raw])
    result = validate(frame, contract, now=NOW)
    kind = column.get("type", "timestamp")
    assert result.quarantine["_reason"].tolist() == [f"v: '{raw}' is not a {kind}"]


def test_a_decimal_comma_reads_as_declared_and_a_point_then_does_not_parse() -> None:
    contract, frame = one_column({"type": "float", "decimal": ","},
                                 ["17,46", " 5 ", "-0,5", "1.234,5", "1.5", "", "NULL"])
    result = validate(frame, contract, now=NOW)
    assert result.clean["v"].tolist()[:3] == [17.46, 5.0, -0.5]
    assert result.clean["v"].iloc[3:].isna().all()
    # "1.234,5" (a thousands mark) and "1.5" would read as other numbers: quarantined as sent
    assert result.quarantine["_reason"].tolist() == ["v: '1.234,5' is not a float",
                                                     "v: '1.5' is not a float"]


def test_amount_typo_is_quarantined_with_column_and_value_in_the_reason() -> None:
    frame = pd.DataFrame([tx(), tx(transaction_id="t2", amount="12,5O")])
    result = validate(frame, TRANSACTIONS, references=CUSTOMERS, now=NOW)
    assert result.clean["amount"].tolist() == [12.5]
    row = result.quarantine.iloc[0]
    assert (row["_row"], row["_rules"], row["_reason"]) == (
        1, "type:amount", "amount: '12,5O' is not a float")
    assert row["amount"] == "12,5O"  # quarantined as received


def test_clean_frame_has_declared_dtypes_in_declared_order_whatever_the_input_dtype() -> None:
    contract = Contract.from_dict({"dataset": "d", "columns": {
        "s": {"type": "string"}, "i": {"type": "int"}, "f": {"type": "float"},
        "t": {"type": "timestamp"}, "d": {"type": "date"}, "b": {"type": "bool"}}})
    text = pd.DataFrame({"b": ["true"], "d": ["2026-07-01"], "f": ["1.5"], "i": ["3"],
                         "s": ["x"], "t": ["2026-07-01T10:00:00Z"]})
    typed = pd.DataFrame({"b": [True], "d": [pd.Timestamp("2026-07-01")], "f": [1.5], "i": [3],
                          "s": ["x"], "t": [pd.Timestamp("2026-07-01 10:00")]})
    for frame in (text, text.astype("string"), typed):
        result = validate(frame, contract, now=NOW)
        assert len(result.clean) == 1
        assert [str(t) for t in result.clean.dtypes] == [
            "string", "Int64", "float64", "datetime64[ns, UTC]", "datetime64[ns]", "boolean"]
        assert list(result.clean.columns) == ["s", "i", "f", "t", "d", "b"]


def test_input_index_is_kept_even_when_not_unique() -> None:
    contract, frame = one_column({"type": "float", "max": 5}, ["1", "9", "2"])
    frame.index = ["r", "r", "s"]
    result = validate(frame, contract, now=NOW)
    assert result.clean.index.tolist() == ["r", "s"]
    assert result.quarantine.index.tolist() == ["r"]
    assert result.quarantine["_row"].tolist() == [1]


def test_float_ids_read_with_a_nan_become_integer_text() -> None:
    contract, frame = one_column({"type": "string"}, [1.0, np.nan, 20.0])
    result = validate(frame.astype("float64"), contract, now=NOW)
    assert result.clean["v"].tolist() == ["1", pd.NA, "20"]


# ------------------------------------------------------------------------------ row rules


def test_exact_failure_counts_per_rule() -> None:
    frame = pd.DataFrame([
        tx(),                                                            # clean
        tx(transaction_id="t2", amount="-1"),                            # range
        tx(transaction_id="t3", amount="2000", quantity="0"),            # range ×2 columns
        tx(transaction_id="t4", channel="fax", email="nobody"),          # allowed, regex
        tx(transaction_id="x5", customer_id=None),                       # regex, not_null
        tx(transaction_id="t6", ts="2026-08-01T00:00:00Z"),              # not_in_future
        tx(transaction_id="t7", customer_id="c404"),                     # reference
        tx(transaction_id="t8", quantity="1.5", ts="soon"),              # type ×2
        tx(transaction_id="t9", channel="store"),                        # clean
    ])
    result = validate(frame, TRANSACTIONS, references=CUSTOMERS, now=NOW)
    assert failures(result) == {
        "range:amount": 2, "range:quantity": 1, "allowed:channel": 1, "regex:email": 1,
        "regex:transaction_id": 1, "not_null:customer_id": 1, "not_in_future:ts": 1,
        "reference:customer_id": 1, "type:quantity": 1, "type:ts": 1,
    }
    assert result.quarantine["_row"].tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert result.quarantine["_rules"].tolist()[1:4] == [
        "range:amount;range:quantity", "allowed:channel;regex:email",
        "regex:transaction_id;not_null:customer_id"]
    reasons = dict(zip(result.quarantine["_row"], result.quarantine["_reason"], strict=True))
    assert reasons[1] == "amount: '-1' below min 0"
    assert reasons[5] == "ts: '2026-08-01T00:00:00Z' is in the future"
    assert reasons[6] == "customer_id: 'c404' not found in customers.customer_id"
    assert result.clean["transaction_id"].tolist() == ["t1", "t9"]
    assert result.clean.index.tolist() == [0, 8]
    assert result.score == pytest.approx(200 / 9)
    assert result.rule_scores["range"] == pytest.approx(100 * 7 / 9)
    rates = result.rules.set_index(["rule", "column"])["failure_rate"]
    assert rates["range", "amount"] == pytest.approx(2 / 9)


def test_unique_column_keeps_the_first_and_names_it() -> None:
    contract, frame = one_column({"type": "string", "unique": True}, ["a", "b", "a", None, None,
                                                                      "a"])
    frame["n"] = range(6)  # no exact duplicates
    result = validate(frame, contract, now=NOW)
    assert failures(result) == {"unique:v": 2}
    assert result.quarantine["_row"].tolist() == [2, 5]
    assert result.quarantine["_reason"].tolist() == ["v: 'a' repeats row 0"] * 2


def test_regex_outside_re2_falls_back_to_python() -> None:
    contract, frame = one_column({"type": "string", "regex": r"(?!admin)[a-z]+"},
                                 ["bob", "admin", "Bob"])
    result = validate(frame, contract, now=NOW)
    assert result.quarantine["_row"].tolist() == [1, 2]


# ----------------------------------------------------------------------------- duplicates


def test_exact_duplicates_and_key_duplicates_are_told_apart() -> None:
    frame = pd.DataFrame([
        tx(transaction_id="t1", amount="12.50"),
        tx(transaction_id="t2"),
        tx(transaction_id="t1", amount="12.5"),   # same values once typed: exact duplicate
        tx(transaction_id="t1", amount="99"),     # same key, other values
        tx(transaction_id="t2"),                  # exact duplicate of row 1
        tx(transaction_id="t1", amount="12.50"),  # exact duplicate of row 0 again
    ])
    result = validate(frame, TRANSACTIONS, references=CUSTOMERS, now=NOW)
    assert failures(result) == {"duplicate": 3, "duplicate_key:transaction_id": 1}
    q = result.quarantine.set_index("_row")
    assert q.loc[[2, 4, 5], "_rules"].tolist() == ["duplicate"] * 3
    assert q.loc[[2, 4, 5], "_reason"].tolist() == [
        "exact duplicate of row 0", "exact duplicate of row 1", "exact duplicate of row 0"]
    assert q.loc[3, "_rules"] == "duplicate_key:transaction_id"
    assert q.loc[3, "_reason"] == "key (transaction_id) = ('t1') repeats row 0"
    assert result.clean.index.tolist() == [0, 1]


def test_exact_duplicates_without_a_key_or_numeric_columns() -> None:
    contract = Contract.from_dict({"dataset": "d", "columns": {"a": {"type": "string"},
                                                               "b": {"type": "string"}}})
    frame = pd.DataFrame({"a": ["x", "x", "x", None, None], "b": ["1", "2", "1", None, None],
                          "extra": [1, 1, 2, 3, 3]})
    result = validate(frame, contract, now=NOW)
    # row 2 differs from row 0 only in a column the contract does not declare: not a duplicate
    assert result.quarantine["_row"].tolist() == [4]
    assert result.quarantine["_reason"].tolist() == ["exact duplicate of row 3"]


def test_composite_key_ignores_rows_with_a_null_key_part() -> None:
    contract = Contract.from_dict({"dataset": "d", "key": ["k1", "k2"], "columns": {
        "k1": {"type": "string"}, "k2": {"type": "int"}, "v": {"type": "float"}}})
    frame = pd.DataFrame({"k1": ["a", "a", "a", None, None], "k2": ["1", "2", "1", "1", "1"],
                          "v": ["1", "2", "3", "4", "5"]})
    result = validate(frame, contract, now=NOW)
    assert failures(result) == {"duplicate_key:k1+k2": 1, "not_null:k1": 2}
    assert result.quarantine.set_index("_row").loc[2, "_reason"] == \
        "key (k1, k2) = ('a', '1') repeats row 0"


# ----------------------------------------------------------------------------- references


def test_orphans_are_counted_per_row_and_nulls_are_not_orphans() -> None:
    contract = Contract.from_dict({"dataset": "orders", "columns": {
        "customer_id": {"type": "int"}},
        "references": [{"column": "customer_id", "dataset": "customers",
                        "ref_column": "id"}]})
    frame = pd.DataFrame({"customer_id": ["1", "2", "7", "7", None, "8", "2.0"],
                          "order": range(7)})
    result = validate(frame, contract, references={"customers.id": {1, 2, 3}}, now=NOW)
    assert failures(result) == {"reference:customer_id": 3}
    assert result.quarantine["_row"].tolist() == [2, 3, 5]
    assert result.quarantine["_reason"].iloc[0] == "customer_id: '7' not found in customers.id"


def test_reference_without_keys_is_skipped_with_a_warning() -> None:
    result = validate(pd.DataFrame([tx(customer_id="c404")]), TRANSACTIONS, now=NOW)
    assert len(result.clean) == 1
    assert result.warnings == ["reference customer_id -> customers.customer_id not checked: "
                               "no keys given for 'customers'"]


# --------------------------------------------------------------------------------- schema


def test_renamed_column_is_a_schema_break_naming_both_columns() -> None:
    frame = pd.DataFrame([tx(), tx(transaction_id="t2", amount="30")]).rename(
        columns={"amount": "amount_usd"})
    result = validate(frame, TRANSACTIONS, references=CUSTOMERS, now=NOW)
    [issue] = result.schema_issues
    assert (issue.kind, issue.column, issue.renamed_to, issue.breaking) == (
        "renamed", "amount", "amount_usd", True)
    assert not result.gate_passed
    assert len(result.gate_reasons) == 1
    assert "'amount'" in result.gate_reasons[0] and "'amount_usd'" in result.gate_reasons[0]
    assert result.gate_reasons[0].startswith("schema break")
    assert result.clean["amount"].isna().all()  # not silently mapped back
    with pytest.raises(QualityGateFailed, match="amount_usd"):
        result.raise_for_gate()

    allowed = TRANSACTIONS.model_copy(update={"gate": TRANSACTIONS.gate.model_copy(
        update={"allow_schema_break": True})})
    assert validate(frame, allowed, references=CUSTOMERS, now=NOW).gate_passed


def test_missing_and_unexpected_columns_that_do_not_match_are_reported_apart() -> None:
    frame = pd.DataFrame([tx()]).drop(columns=["quantity"]).assign(note="gift")
    result = validate(frame, TRANSACTIONS, references=CUSTOMERS, now=NOW)
    kinds = {(i.kind, i.column, i.breaking) for i in result.schema_issues}
    assert kinds == {("missing", "quantity", True), ("unexpected", "note", False)}
    assert result.gate_reasons == [
        "schema break: required column 'quantity' is missing from the input"]
    assert "note" not in result.clean.columns and "note" in result.quarantine.columns


@pytest.mark.parametrize("separator", [";", "\t", "|"])
def test_a_header_read_as_one_column_names_the_delimiter(separator: str) -> None:
    frame = pd.DataFrame({separator.join(tx()): [separator.join(map(str, tx().values()))]})
    result = validate(frame, TRANSACTIONS, references=CUSTOMERS, now=NOW)
    first, *others = result.gate_reasons
    shown = separator.encode("unicode_escape").decode()
    assert first.startswith(f"schema break: the input has one column {separator.join(tx())!r}")
    assert first.endswith(f'separated by "{shown}"; a CSV file source reads them with '
                          f'`delimiter: "{shown}"`')
    assert sum("is missing from the input" in reason for reason in others) == len(tx())
    assert sum(issue.column == separator.join(tx()) for issue in result.schema_issues) == 1


def test_optional_missing_column_is_null_and_not_an_issue() -> None:
    contract = Contract.from_dict({"dataset": "d", "columns": {
        "a": {"type": "int"}, "b": {"type": "float", "required": False}}})
    result = validate(pd.DataFrame({"a": ["1", "2"]}), contract, now=NOW)
    assert result.schema_issues == [] and result.gate_passed
    assert result.clean["b"].isna().all() and str(result.clean["b"].dtype) == "float64"


# ------------------------------------------------------------------ volume, freshness, gate


def history(rows: list[int], null_rate: float = 0.0) -> list[DatasetStats]:
    return [DatasetStats(dataset="transactions", rows=n, null_rates={"amount": null_rate},
                         validated_at=NOW - timedelta(days=i + 1)) for i, n in enumerate(rows)]


def test_volume_anomaly_against_median_and_mad_of_history() -> None:
    frame = pd.DataFrame([tx(transaction_id=f"t{i}") for i in range(10)])
    past = history([100, 104, 98, 101, 97])
    result = validate(frame, TRANSACTIONS, references=CUSTOMERS, history=past, now=NOW)
    [anomaly] = result.anomalies
    assert (anomaly.kind, anomaly.observed) == ("volume", 10)
    # median 100, MAD 2 (deviations 0, 4, 2, 1, 3) raised to the count's Poisson noise
    # sqrt(100) = 10, k = 5
    assert (anomaly.low, anomaly.high) == (50, 150)
    assert result.score == 100 and not result.gate_passed
    assert result.gate_reasons == [f"volume anomaly: {anomaly.detail}"]
    # inside the band, or with too little history: no anomaly
    assert validate(frame, TRANSACTIONS, references=CUSTOMERS, history=history([10, 11, 9]),
                    now=NOW).anomalies == []
    # 10 rows where about 30 came: within 30 ± 5·sqrt(30), however steady the 30s were
    assert validate(frame, TRANSACTIONS, references=CUSTOMERS, history=history([30, 31, 29]),
                    now=NOW).anomalies == []
    assert validate(frame, TRANSACTIONS, references=CUSTOMERS, history=history([100, 100]),
                    now=NOW).anomalies == []


def test_volume_is_per_day_of_events_so_a_blocked_day_can_pass_with_the_next() -> None:
    """A day the gate blocked arrives again with the next day: 2 days of 100 rows are 100 a day,
    not a spike of 200, while 200 rows on one day still are; a handful of late events from an
    earlier day does not count as a day covered."""
    def days(*counts: int) -> pd.DataFrame:
        rows = [tx(transaction_id=f"t{d}{i:04d}", ts=f"2026-07-0{d + 1}T10:00:00Z")
                for d, count in enumerate(counts) for i in range(count)]
        return pd.DataFrame(rows)

    past = history([100, 104, 98, 101, 97])
    two_days = validate(days(100, 102), TRANSACTIONS, references=CUSTOMERS, history=past,
                        time_column="ts", now=NOW)
    assert two_days.stats.days == 2 and two_days.anomalies == []
    spike = validate(days(0, 200), TRANSACTIONS, references=CUSTOMERS, history=past,
                     time_column="ts", now=NOW)
    [anomaly] = spike.anomalies
    assert (spike.stats.days, anomaly.observed, anomaly.high) == (1, 200, 150)
    late = validate(days(3, 99), TRANSACTIONS, references=CUSTOMERS, history=past,
                    time_column="ts", now=NOW)
    assert late.stats.days == 1 and late.anomalies == []
    # the history is per day too: after a two-day batch, one day of 100 is typical
    after = validate(days(0, 101), TRANSACTIONS, references=CUSTOMERS,
                     history=[*past[1:], two_days.stats], time_column="ts", now=NOW)
    assert after.anomalies == []
    # a half-volume pair of days is still a drop
    low = validate(days(30, 30), TRANSACTIONS, references=CUSTOMERS, history=past,
                   time_column="ts", now=NOW)
    assert low.stats.days == 2 and [a.observed for a in low.anomalies] == [30]
    assert low.anomalies[0].detail.startswith(
        "60 rows over 2 days (30 a day), expected 50–150 a day")


def test_empty_frame_scores_100_but_is_a_volume_anomaly() -> None:
    empty = pd.DataFrame(columns=list(tx()))
    result = validate(empty, TRANSACTIONS, references=CUSTOMERS,
                      history=history([100] * 4, null_rate=0.3), now=NOW)
    assert result.score == 100.0
    assert [a.kind for a in result.anomalies] == ["volume", "freshness"]  # no null-rate noise
    assert result.stats.null_rates == {}
    assert not result.gate_passed
    assert len(result.clean) == len(result.quarantine) == 0


def test_null_rate_anomaly_names_the_column() -> None:
    frame = pd.DataFrame([tx(transaction_id=f"t{i}", amount=None if i % 2 else "5")
                          for i in range(100)])
    result = validate(frame, TRANSACTIONS, references=CUSTOMERS,
                      history=history([100, 100, 100], null_rate=0.01), now=NOW)
    [anomaly] = result.anomalies
    assert (anomaly.kind, anomaly.column, anomaly.observed) == ("null_rate", "amount", 0.5)


def test_null_rate_band_allows_a_small_batch_its_sampling_noise() -> None:
    """A steady 1% null rate: 4 nulls in a batch of 100 rows is within sampling noise (the band
    widens by sqrt(p(1-p)/n)), while 3% over 2,000 rows is an anomaly."""
    def nulls(rows: int, every: int) -> pd.DataFrame:
        return pd.DataFrame([tx(transaction_id=f"t{i}", amount=None if i % every == 0 else "5")
                             for i in range(rows)])

    steady = history([100] * 3 + [2000] * 3, null_rate=0.01)
    small = validate(nulls(100, 33), TRANSACTIONS, references=CUSTOMERS, history=steady,
                     now=NOW)
    assert small.stats.null_rates["amount"] == 0.04 and small.anomalies == []
    large = validate(nulls(2000, 33), TRANSACTIONS, references=CUSTOMERS, history=steady,
                     now=NOW)
    [anomaly] = [a for a in large.anomalies if a.kind == "null_rate"]
    # band: 1% ± 5 · sqrt(0.01 · 0.99 / 2000) = 1% ± 1.1%
    assert anomaly.observed == 61 / 2000 and round(anomaly.high, 4) == 0.0211
    # no nulls in history: one null among 30 rows is noise (rate taken as at least 1/30)
    clean = history([30] * 3, null_rate=0.0)
    assert validate(nulls(30, 31), TRANSACTIONS, references=CUSTOMERS, history=clean,
                    now=NOW).anomalies == []


def test_stale_data_is_a_freshness_anomaly() -> None:
    frame = pd.DataFrame([tx(ts="2026-06-20T00:00:00Z")])
    result = validate(frame, TRANSACTIONS, references=CUSTOMERS, now=NOW)
    [anomaly] = result.anomalies
    assert anomaly.kind == "freshness" and "2026-06-20" in anomaly.detail
    assert not result.gate_passed
    relaxed = TRANSACTIONS.model_copy(update={"gate": TRANSACTIONS.gate.model_copy(
        update={"allow_anomalies": True})})
    assert validate(frame, relaxed, references=CUSTOMERS, now=NOW).gate_passed


def test_gate_names_score_and_rule_limits() -> None:
    contract = TRANSACTIONS.model_copy(update={"gate": TRANSACTIONS.gate.model_copy(update={
        "min_score": 90.0, "max_rule_failure_rate": {"reference": 0.05, "type:amount": 0.0,
                                                     "range": 0.5}})})
    rows = [tx(transaction_id=f"t{i}") for i in range(18)]
    rows += [tx(transaction_id="t18", customer_id="c404"), tx(transaction_id="t19", amount="x")]
    result = validate(pd.DataFrame(rows), contract, references=CUSTOMERS, now=NOW)
    assert result.score == 90.0
    # the score is at its minimum and reference at its limit: only type:amount fails the gate
    assert result.gate_reasons == [
        "rule type:amount failed on 5.00% of rows, above the limit 0.00%"]
    assert result.warnings == []
    rows[0] = tx(transaction_id="t0", customer_id="c405")
    result = validate(pd.DataFrame(rows), contract, references=CUSTOMERS, now=NOW)
    assert result.gate_reasons == [
        "score 85.00 below minimum 90 (most failures: reference:customer_id, type:amount)",
        "rule reference failed on 10.00% of rows, above the limit 5.00%",
        "rule type:amount failed on 5.00% of rows, above the limit 0.00%",
    ]


def test_outliers_are_flagged_and_kept() -> None:
    contract, frame = one_column({"type": "float", "outliers": "iqr"},
                                 [str(v) for v in [10, 11, 12, 10, 11, 12, 11, 500]])
    frame["n"] = range(8)
    result = validate(frame, contract, now=NOW)
    [flag] = result.outliers
    assert (flag.column, flag.count, flag.rows.tolist()) == ("v", 1, [7])
    assert len(result.clean) == 8 and result.gate_passed


def test_stats_feed_the_next_run() -> None:
    result = validate(pd.DataFrame([tx(), tx(transaction_id="t2", amount=None)]), TRANSACTIONS,
                      references=CUSTOMERS, now=NOW)
    stats = DatasetStats.model_validate_json(result.stats.model_dump_json())
    assert (stats.rows, stats.null_rates["amount"], stats.contract_version) == (
        2, 0.5, TRANSACTIONS.version)


# ------------------------------------------------------------------------------ contracts


def test_contract_version_is_stable_and_changes_with_the_definition() -> None:
    same = Contract.from_dict(TRANSACTIONS.model_dump(mode="json"))
    assert same.version == TRANSACTIONS.version and len(TRANSACTIONS.version) == 16
    looser = Contract.from_dict({**TRANSACTIONS.model_dump(mode="json"), "volume_mad_k": 6})
    assert looser.version != TRANSACTIONS.version
    documented = TRANSACTIONS.model_copy(update={"description": "card payments"})
    assert documented.version == TRANSACTIONS.version
    bucketed = TRANSACTIONS.model_copy(update={"bucket_by": "customer_id"})
    assert bucketed.version == TRANSACTIONS.version  # a storage layout, not a rule


def test_load_contracts_from_a_file(tmp_path) -> None:
    path = tmp_path / "contracts.yaml"
    path.write_text("contracts:\n  - dataset: customers\n    key: customer_id\n"
                    "    columns: {customer_id: {type: string}, signup: {type: date}}\n")
    contracts = load_contracts(path)
    assert contracts["customers"].key == ("customer_id",)
    assert [c.name for c in contracts["customers"].columns] == ["customer_id", "signup"]


@pytest.mark.parametrize(("spec", "message"), [
    ({"columns": {"a": {"type": "int", "regex": "x"}}}, "regex applies to string columns"),
    ({"columns": {"a": {"type": "uuid"}}}, "type"),
    ({"columns": {"a": {"type": "string", "decimal": ","}}},
     "a decimal mark applies to int and float columns"),
    ({"columns": {"a": {"type": "int", "format": "unix_s"}}},
     "format applies to timestamp and date columns"),
    ({"columns": {"a": {"type": "timestamp", "format": "dd.mm.yyyy"}}},
     "neither a strftime pattern"),
    ({"columns": {"a": {"type": "int"}}, "key": ["b"]}, "key column 'b' is not declared"),
    ({"columns": {"a": {"type": "int"}}, "bucket_by": "b"},
     "bucket_by column 'b' is not declared"),
    ({"columns": {"a": {"type": "int", "min": 5, "max": 1}}}, "min 5.0 is above max 1.0"),
    ({"columns": {"a": {"type": "int"}}, "gate": {"max_rule_failure_rate": {"typo": 0.1}}},
     "unknown rule 'typo'"),
])
def test_invalid_contract_names_the_problem(spec: dict, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        Contract.from_dict({"dataset": "d", **spec})


def test_clean_output_satisfies_the_contract_as_pandera_sees_it() -> None:
    frame = pd.DataFrame([tx(transaction_id=f"t{i}") for i in range(5)]
                         + [tx(transaction_id="t1"), tx(transaction_id="t9", amount="-3")])
    result = validate(frame, TRANSACTIONS, references=CUSTOMERS, now=NOW)
    TRANSACTIONS.to_pandera().validate(result.clean, lazy=True)
    assert Column(name="x", type="float").dtype == "float64"


# ------------------------------------------------------------------------------ invariant

_JUNK = st.one_of(st.none(), st.just(""), st.just("12.50"), st.just("12,5O"), st.just("nan"),
                  st.just("2026-07-01"), st.just("07/01/2026"), st.just("t1"), st.just("c1"),
                  st.just("yes"), st.integers(-5, 2000), st.floats(allow_nan=True),
                  st.text(max_size=6))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(*[_JUNK] * 5), max_size=25),
       drop=st.sampled_from([None, "amount", "ts"]))
def test_no_row_is_ever_dropped(rows: list[tuple], drop: str | None) -> None:
    columns = ["transaction_id", "customer_id", "amount", "quantity", "ts"]
    frame = pd.DataFrame(rows, columns=columns, dtype=object)
    frame = frame.drop(columns=[drop]) if drop else frame
    result = validate(frame, TRANSACTIONS, references=CUSTOMERS, now=NOW)
    assert len(result.clean) + len(result.quarantine) == len(frame)
    positions = sorted([*result.clean.index, *result.quarantine["_row"]])
    assert positions == list(range(len(frame)))
    assert (result.quarantine["_rules"] != "").all()
    assert result.score == pytest.approx(100 * len(result.clean) / len(frame) if len(frame)
                                         else 100)


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(st.tuples(st.sampled_from(["k1", "k2", "k3", None]),
                               st.sampled_from(["1", "2", "2.0", None]),
                               st.sampled_from(["a", "b", None])), max_size=30))
def test_duplicates_agree_with_pandas_on_the_typed_values(rows: list[tuple]) -> None:
    contract = Contract.from_dict({"dataset": "d", "key": ["k"], "columns": {
        "k": {"type": "string", "nullable": True}, "n": {"type": "int"},
        "s": {"type": "string"}}})
    frame = pd.DataFrame(rows, columns=["k", "n", "s"], dtype=object)
    result = validate(frame, contract, now=NOW)
    typed = frame.assign(n=pd.to_numeric(frame["n"]))
    exact = typed.duplicated(keep="first").to_numpy()
    by_key = typed["k"].notna().to_numpy() & typed.duplicated(["k"], keep="first").to_numpy()
    rules = result.quarantine.set_index("_row")["_rules"].str.split(";")
    flagged = {rule: sorted(i for i, r in rules.items() if rule in r)
               for rule in ("duplicate", "duplicate_key:k")}
    assert flagged["duplicate"] == np.flatnonzero(exact).tolist()
    assert flagged["duplicate_key:k"] == np.flatnonzero(by_key & ~exact).tolist()
