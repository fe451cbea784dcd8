"""The sequential family: RecBole's leave-one-out data, the query adapter, knowledge that never looks
past the prediction point, a sequential teacher -> student run end to end, and refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import write_interactions
from kdbench.backbones import build_model
from kdbench.families import FAMILIES, BackboneSpec, family_of, load_data
from kdbench.families.sequential import LEAVE_ONE_OUT, MAX_SEQUENCE_LENGTH, QUERY_FIELD
from kdbench.strategies.knowledge import teacher_top_n
from test_cli import run_cli, workdir  # noqa: F401  (the fixture)

MAX_LEN = MAX_SEQUENCE_LENGTH


@pytest.fixture(scope="module")
def seq_toy(tmp_path_factory):
    """The toy dataset (50 users x 20 items, increasing timestamps) under leave-one-out, for SASRec."""
    root = tmp_path_factory.mktemp("seq")
    path = write_interactions(root / "toy" / "toy.inter")
    data = load_data("toy", str(root), model="SASRec", batch_size=4096, protocol=LEAVE_ONE_OUT,
                     work_dir=tmp_path_factory.mktemp("work"))
    return data, path


def frozen(spec: str, data, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(BackboneSpec.parse(spec), data).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def test_leave_one_out_gives_each_user_one_validation_and_one_test_query_and_the_rest_to_training(seq_toy):
    data, _ = seq_toy
    # 20 items per user: 19 prediction points, the last two held out
    assert len(data.train.dataset) == 50 * 17
    assert len(data.valid.dataset) == len(data.test.dataset) == 50
    assert len(data.queries) == 50 * 17 + 1  # + the padding query 0
    batch = next(iter(data.train))
    assert sorted(batch[QUERY_FIELD].tolist()) == list(range(1, 50 * 17 + 1))  # shuffled batches


@pytest.mark.parametrize("spec", ["SASRec:8:L1H2", "GRU4Rec:8"])
def test_the_adapters_full_scores_equal_recboles_full_sort_predict(seq_toy, spec):
    data, _ = seq_toy
    model = frozen(spec, data)
    context = family_of(BackboneSpec.parse(spec)).context(data, model)
    batch = next(iter(data.train))
    expected = model.full_sort_predict(batch)
    queries = batch[QUERY_FIELD]
    assert torch.allclose(context.student.full_scores(queries), expected, atol=1e-5)
    # a few items per query: the same scores as RecBole's predict, and as the full scores' columns
    items = torch.randint(1, data.n_items, (len(queries), 3), generator=torch.Generator().manual_seed(0))
    scores = context.student.score(queries, items)
    assert torch.allclose(scores, expected.gather(1, items), atol=1e-5)
    single = batch[:4]
    single.update(type(single)({model.POS_ITEM_ID: items[:4, 0]}))
    assert torch.allclose(model.predict(single), scores[:4, 0], atol=1e-5)
    # the sequence representation is RecBole's forward
    users, item_table = context.student.representation_tables()
    assert users.shape == (len(data.queries), 8)
    assert torch.equal(item_table, model.item_embedding.weight)
    assert torch.allclose(users[queries[:5]], model.forward(batch["item_id_list"][:5], batch["item_length"][:5]))


def test_knowledge_for_a_query_uses_only_the_items_before_its_prediction_point(seq_toy):
    data, path = seq_toy
    frame = pd.read_csv(path, sep="\t")
    frame.columns = [c.split(":")[0] for c in frame.columns]
    timeline = {user: list(rows.sort_values("timestamp")["item_id"]) for user, rows in frame.groupby("user_id")}
    dataset = data.dataset
    train = data.train.dataset.inter_feat
    users = dataset.id2token(dataset.uid_field, train[dataset.uid_field].numpy())
    targets = dataset.id2token(dataset.iid_field, train[dataset.iid_field].numpy())
    history = data.history
    for row, (user, target) in enumerate(zip(users, targets)):
        query = row + 1
        items = timeline[user]
        point = items.index(target)
        seen = set(dataset.id2token(dataset.iid_field, history.indices[history.indptr[query]:history.indptr[query + 1]]))
        assert seen == set(items[max(0, point - MAX_LEN):point])  # the input: nothing at or after the target
        length = int(data.queries.lengths[query])
        assert list(dataset.id2token(dataset.iid_field, data.queries.items[query, :length].numpy())) == items[:point]

    # the teacher's top list for a query depends only on that input: rebuilding the query's input
    # from the raw timeline (its prefix) and scoring it alone gives the same list, and it never
    # holds an item the query has seen
    teacher = frozen("SASRec:8:L1H2", data)
    context = FAMILIES["sequential"].context(data, frozen("GRU4Rec:4", data), teacher)
    top = teacher_top_n(context.teacher, history, 5)
    for query in (1, 17, 400, len(data.queries) - 1):
        length = int(data.queries.lengths[query])
        alone = teacher.full_sort_predict(type(next(iter(data.train)))({
            "item_id_list": data.queries.items[query:query + 1], "item_length": torch.tensor([length])}))[0]
        alone[0] = -torch.inf
        alone[data.queries.items[query, :length]] = -torch.inf
        assert top[query].tolist() == torch.topk(alone, 5).indices.tolist()
        assert not set(top[query].tolist()) & set(data.queries.items[query, :length].tolist())


def test_a_sequential_teacher_distils_into_sasrec_and_gru4rec_end_to_end(capsys, workdir, tmp_path):  # noqa: F811
    write_interactions(tmp_path / "data" / "toy" / "toy.inter")
    common = ["--dataset", "toy", "--data-path", str(tmp_path / "data"), "--teacher", "SASRec:8:L1H2",
              "--epochs", "2", "--teacher-epochs", "2", "--seed", "0",
              "--hp", "K=5", "--hp", "L=5", "--hp", "top_n=10"]
    code, out, err = run_cli(capsys, "run", *common, "--student", "GRU4Rec:4", "--strategy", "rrd")
    assert code == 0, err
    code, out, err = run_cli(capsys, "run", *common[:-6], "--student", "SASRec:4:L1H1",
                             "--strategy", "scratch,kd-full,fitnet")
    assert code == 0, err
    runs = sorted((workdir / "results" / "runs" / "toy@leave-one-out").rglob("seed0.json"))
    records = {(r["student"], r["strategy"]): r for r in (json.loads(p.read_text()) for p in runs)}
    assert set(records) == {("GRU4Rec:4", "rrd"), ("SASRec:4:L1H1", "scratch"), ("SASRec:4:L1H1", "kd-full"),
                            ("SASRec:4:L1H1", "fitnet")}
    for record in records.values():
        assert record["status"] == "ok", record.get("error")
        assert record["protocol"] == LEAVE_ONE_OUT
        assert record["config"]["protocol"]["eval_args"]["split"] == {"LS": "valid_and_test"}
        assert len(record["per_user"]["user_ids"]) == 50  # one test query per user
        assert 0 <= record["test"]["ndcg@10"] <= 1
        assert record["cost"]["latency_p50_ms"] > 0
    # the KD run differs from scratch (same seed): the KD term did something
    assert records[("SASRec:4:L1H1", "kd-full")]["test"] != records[("SASRec:4:L1H1", "scratch")]["test"]

    # the report gives the family its own section, with per-query latency from the runs; verify accepts it
    code, out, err = run_cli(capsys, "report")
    assert code == 0, err
    board = (workdir / "results" / "leaderboard.md").read_text()
    section = board[board.index("# Sequential recommenders"):]
    assert "## toy@leave-one-out: SASRec:8:L1H2 → SASRec:4:L1H1" in section
    assert "Inference cost per model shape" not in board  # `cost` measures general shapes only
    pairing = section[section.index("→ SASRec:4:L1H1"):]
    cost_lines = [line for line in pairing[pairing.index("Cost:"):].splitlines()[2:] if line.startswith("|")]
    header = [cell.strip() for cell in cost_lines[0].split("|")]
    row = next([cell.strip() for cell in line.split("|")] for line in cost_lines if "| kd-full " in line)
    latency = records[("SASRec:4:L1H1", "kd-full")]["cost"]["latency_p50_ms"]
    assert row[header.index("ms/user")] == f"{latency:.3f}"
    code, out, err = run_cli(capsys, "verify")
    assert code == 0, out + err


@pytest.mark.parametrize("args, fragments", [
    (["--teacher", "SASRec:8", "--student", "SASRec:4:L1H1", "--strategy", "cd"],
     ["strategy 'cd' does not apply to sequential backbones", "valid for them:", "kd-full", "rrd"]),
    (["--teacher", "SASRec:8", "--student", "BPR:4"], ["a pairing stays within one family"]),
    (["--teacher", "BPR:8", "--student", "BPR:4", "--strategy", "kd-full"],
     ["strategy 'kd-full' does not apply to general backbones"]),
    (["--teacher", "SASRec:8", "--student", "GRU4Rec:4", "--protocol", "random"],
     ["protocol 'random' is not for sequential backbones", "leave-one-out"]),
    # DCD's default is the user side only (item_weight 0): its item side, asked for, is refused
    (["--teacher", "SASRec:8", "--student", "GRU4Rec:4", "--strategy", "dcd", "--hp", "item_weight=1.0"],
     ["needs item_weight=0.0"]),
    (["--teacher", "SASRec:6:H4", "--student", "GRU4Rec:4"], ["multiple of the number of heads"]),
    (["--teacher", "GRU4Rec:8:H2", "--student", "GRU4Rec:4"], ["unknown option 'H' for GRU4Rec"]),
])
def test_a_strategy_or_pairing_a_family_cannot_run_is_refused_in_one_line(capsys, workdir, args, fragments):  # noqa: F811
    code, out, err = run_cli(capsys, "run", *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kdbench: error:"), err
    for fragment in fragments:
        assert fragment in lines[0]
    assert not (workdir / "results" / "runs").exists()


def test_list_shows_the_sequential_backbones_and_the_strategies_each_family_supports(capsys, workdir):  # noqa: F811
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    assert "SASRec" in out and "GRU4Rec" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert "general, sequential" in rows["rrd"] and "sequential" not in rows["cd"]
    assert "sequential" in rows["kd-full"] and "general" not in rows["kd-full"].split("response")[1].split("Hinton")[0]


def test_the_sequential_suite_resolves_by_name_and_runs_only_supported_strategies():
    from kdbench.run.runner import validate_cells
    from kdbench.run.suites import expand, load_suite

    suite = load_suite("sequential")
    cells = expand(suite)
    assert {c.protocol for c in cells} == {LEAVE_ONE_OUT}
    assert {c.teacher.model for c in cells} == {"SASRec"}
    assert {c.student.model for c in cells} == {"SASRec", "GRU4Rec"}
    assert all(FAMILIES["sequential"].supports(c.strategy) for c in cells if not c.is_teacher)
    validate_cells(cells)
    # the default (general) suite is unchanged by the sequential-only strategy
    assert "kd-full" not in {c.strategy for c in expand(load_suite(None))}
    assert np.all([c.protocol != LEAVE_ONE_OUT for c in expand(load_suite(None))])
