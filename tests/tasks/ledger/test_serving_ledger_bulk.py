"""The serving ledger writes a request in two bulk inserts; each answer must still point at its own recourse."""
from datetime import datetime, timezone

from tasks.ledger.db import Ledger
from tasks.ledger.recorder import ServingLedger


def _rows(request: str, statuses: list[str]) -> list[dict]:
    now = datetime.now(timezone.utc)
    out = []
    for i, status in enumerate(statuses):
        applicant = f"{request}-applicant-{i}"
        issued = None
        if status == "ok":
            issued = dict(requested_at=now, batch_id=f"serve-{request}", applicant_id=applicant, dataset="compas",
                          factual={"age": 20 + i}, recourse={"age": 30 + i}, cost=0.1 * i, score_factual=0.2,
                          score_recourse=0.8, classifier_version="1", generator_version="1")
        served = dict(answered_at=now, request_id=request, row=i + 1, applicant_id=applicant, dataset="compas",
                      status=status, reason=None if status == "ok" else "x", applicant={"age": str(20 + i)},
                      answer={"status": status}, classifier_version="1", generator_version="1")
        out.append({"key": f"{request}#{i + 1}", "issued": issued, "served": served})
    return out


def test_each_served_row_links_its_own_recourse_and_ids_come_back_in_row_order(tmp_path):
    url = f"sqlite:///{tmp_path}/ledger.db"
    ledger = ServingLedger(url)
    try:
        statuses = ["ok", "invalid_input", "ok", "already_favourable", "ok", "no_valid_recourse", "ok"]
        first = ledger._write(_rows("r1", statuses))
        second = ledger._write(_rows("r2", ["invalid_input", "ok", "ok"]))
        assert ledger._write([]) == []
        answers = ledger.answers().set_index("id")
        assert list(answers.loc[first, "row"]) == list(range(1, len(statuses) + 1))
        assert list(answers.loc[second, "row"]) == [1, 2, 3]
        entries = Ledger(url).entries().set_index("id")
        linked = answers.dropna(subset=["recourse_id"])
        assert len(linked) == len(entries) == 6
        for _, row in linked.iterrows():  # the entry an answer points at is that applicant's, with its values
            entry = entries.loc[int(row["recourse_id"])]
            assert entry["applicant_id"] == row["applicant_id"]
            assert entry["factual"]["age"] + 10 == entry["recourse"]["age"]
        assert answers.loc[answers["status"] != "ok", "recourse_id"].isna().all()
    finally:
        ledger.dispose()
