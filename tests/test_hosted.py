"""A hosted classroom (FERLAB_HOSTED=1): users, who owns and may touch which run, and the quotas.

Library tests drive :mod:`fertools.users` and :mod:`fertools.jobs` directly; page tests run the
Train and Dataset pages under AppTest, one AppTest per simulated browser. Anonymous visitors are
told apart by the key in their address (``?visitor=``), which each AppTest sets. Runs are faked by
writing run folders (see tests/test_app_train.py) or queued behind a held job slot, so nothing
trains.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fertools import jobs, users
from fertools.data import save_npz, to_fer2013_csv
from fertools.users import QuotaError, Quotas
from tests.test_app_train import fake_finished_run, fake_running_run
from tests.test_jobs import ONE_EPOCH, pid_gone, slot_held, wait_for, worker_pid
from ui.identity import CLASS_PASS_PARAM, VISITOR_PARAM, literal

ROOT = Path(__file__).resolve().parent.parent
TRAIN = str(ROOT / "app_pages" / "3_Train.py")
DATASET = str(ROOT / "app_pages" / "1_Dataset.py")
TIMEOUT = 180

ALICE_KEY, BOB_KEY = "alice-visitor-key-0001", "bob-visitor-key-000002"
ALICE, BOB = users.anonymous(ALICE_KEY), users.anonymous(BOB_KEY)
TEACHER = replace(
    users.logged_in("https://idp.example|t-1", "Ms Teacher", "teacher@school.example"), is_teacher=True
)
HOSTILE_NAME = "**bold** <img src=x onerror=alert(1)> [link](http://evil)"


@pytest.fixture(autouse=True)
def one_slot(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One job at a time, no codes unless a test sets them; stop every worker a test started."""
    monkeypatch.setenv("FERLAB_MAX_JOBS", "1")
    for variable in ("FERLAB_CLASS_CODE", "FERLAB_TEACHER_CODE", *Quotas.VARIABLES.values()):
        if variable != "FERLAB_MAX_JOBS":
            monkeypatch.delenv(variable, raising=False)
    yield
    jobs.stop_children()


@pytest.fixture
def hosted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERLAB_HOSTED", "1")


@pytest.fixture
def tiny_source(tiny_builtin, ferlab_dirs) -> str:
    path = ferlab_dirs["data"] / "tiny.npz"
    save_npz(tiny_builtin, path)
    return str(path)


@pytest.fixture
def fake_worker() -> Iterator[int]:
    """A live process whose command line looks like a FER Lab worker's (it only sleeps)."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "fertools.jobs"])
    yield sleeper.pid
    sleeper.kill()
    sleeper.wait()


def set_job(run_dir: Path, **values) -> None:
    job = json.loads((run_dir / "job.json").read_text())
    (run_dir / "job.json").write_text(json.dumps({**job, **values}))


def active_run(root: Path, run_id: str, owner: str | None, pid: int) -> str:
    """A queued run of ``owner`` whose worker (``pid``) is alive, without a real worker."""
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    job = {"id": run_id, "name": run_id, "created": 1.0, "config": ONE_EPOCH.to_dict(), "owner": owner}
    (run_dir / "job.json").write_text(json.dumps({**job, "dataset": {"label": "secret.csv"}, "pid": pid}))
    (run_dir / "status.json").write_text(json.dumps({"state": "queued", "pid": pid}))
    return run_id


# --- users and quotas ----------------------------------------------------------------------------


def test_user_ids_are_safe_slugs_that_keep_people_apart():
    dotted = users.logged_in("https://idp|1", hint="a.b@x.org")
    dashed = users.logged_in("https://idp|2", hint="a-b@x.org")
    assert dotted.id != dashed.id and dotted.id.startswith("a-b-") and dashed.id.startswith("a-b-")
    assert users.logged_in("https://idp|1", hint="a.b@x.org") == dotted  # the same person next time
    assert ALICE.id != BOB.id and ALICE_KEY not in ALICE.id  # the id gives the key away to no one
    for user in (dotted, dashed, ALICE, BOB, TEACHER, users.LOCAL_USER):
        assert users.is_user_id(user.id)
    assert users.LOCAL_USER.is_teacher and not ALICE.is_teacher
    with pytest.raises(ValueError, match="not a user id"):
        users.User("../alice", "Alice")
    with pytest.raises(ValueError, match="no subject"):
        users.logged_in("  ")


def test_quota_variables_fall_back_to_their_defaults(monkeypatch):
    assert Quotas.from_env({}) == Quotas(2, 4, 100, 1, 200, 500)
    environ = {
        "FERLAB_MAX_RUNS_PER_USER": "0",
        "FERLAB_MAX_SWEEP_RUNS": "2.5",
        "FERLAB_MAX_EPOCHS": "lots",
        "FERLAB_MAX_JOBS": "",
        "FERLAB_MAX_UPLOAD_MB": "-5",
        "FERLAB_MAX_USER_DISK_MB": " 7 ",
    }
    assert Quotas.from_env(environ) == Quotas(max_user_disk_mb=7)
    monkeypatch.setenv("FERLAB_MAX_EPOCHS", "12")
    monkeypatch.setenv("FERLAB_MAX_JOBS", "three")
    assert (Quotas.from_env().max_epochs, Quotas.from_env().max_jobs, jobs.max_jobs()) == (12, 1, 1)
    monkeypatch.setenv("FERLAB_MAX_JOBS", "3")
    assert jobs.max_jobs() == 3


def test_every_quota_refuses_in_one_sentence_naming_itself():
    quotas = Quotas(max_upload_mb=1, max_user_disk_mb=1)
    refusals = {
        "runs": lambda: quotas.check_runs(2),
        "sweep": lambda: quotas.check_sweep(5),
        "sweep runs": lambda: quotas.check_runs(1, 4, sweep=True),
        "epochs": lambda: quotas.check_epochs(101),
        "upload": lambda: quotas.check_upload(700_000, 400_000),
        "disk": lambda: quotas.check_disk(1 << 20),
    }
    sentences = {}
    for name, refuse in refusals.items():
        with pytest.raises(QuotaError) as caught:
            refuse()
        sentences[name] = str(caught.value)
    assert sentences["runs"] == (
        "You already have 2 runs queued or training (the class limit, FERLAB_MAX_RUNS_PER_USER=2): "
        "cancel one or wait for it to finish."
    )
    assert "FERLAB_MAX_SWEEP_RUNS=4" in sentences["sweep"] and "5 runs" in sentences["sweep"]
    assert "5 runs queued or training" in sentences["sweep runs"]
    assert "FERLAB_MAX_EPOCHS=100" in sentences["epochs"] and "not 101" in sentences["epochs"]
    assert "1.0 MB (the class limit, FERLAB_MAX_UPLOAD_MB=1)" in sentences["upload"]
    assert (
        "FERLAB_MAX_USER_DISK_MB=1" in sentences["disk"] and "delete some of your runs" in sentences["disk"]
    )
    for sentence in sentences.values():  # one sentence: it ends once, and says how to get room
        assert sentence.endswith(".") and sentence.count(". ") == 0 and "): " in sentence
    # Within the limits nothing is refused; a sweep may fill a queue up to its own limit.
    quotas.check_runs(1)
    quotas.check_runs(0, 4, sweep=True)
    quotas.check_epochs(100)
    quotas.check_upload(500_000, 500_000)


# --- ownership ----------------------------------------------------------------------------------


def test_classmates_cannot_cancel_delete_share_or_see_each_others_runs(
    hosted, tiny_builtin, ferlab_dirs, fake_worker
):
    root = ferlab_dirs["runs"]
    running = fake_running_run(root, fake_worker)
    finished = fake_finished_run(root, tiny_builtin)
    for run_id in (running, finished):
        set_job(root / run_id, owner=ALICE.id)
    nobodys = active_run(root, "20261120-100000-0000", None, fake_worker)

    bob = jobs.permissions(jobs.get_run(finished), BOB)
    assert bob == jobs.Permissions(False, False, False, False, False, False, False)
    assert jobs.permissions(jobs.get_run(finished), ALICE) == jobs.Permissions(*[True] * 7)
    for refused in (
        lambda: jobs.cancel(running, user=BOB),
        lambda: jobs.cancel(running),  # nobody, on a hosted server
        lambda: jobs.delete_run(finished, user=BOB),
        lambda: jobs.share(finished, BOB),
    ):
        with pytest.raises(
            jobs.JobError, match=r"is someone else's: only its owner and the teacher may \w+ it\."
        ):
            refused()
    with pytest.raises(jobs.JobError, match="belongs to no one .*only the teacher may cancel it"):
        jobs.cancel(nobodys, user=ALICE)
    assert not (root / running / "cancel").exists() and (root / finished).is_dir()

    jobs.share(finished, ALICE)
    shared = jobs.get_run(finished)
    assert shared.shared and shared.owner == ALICE.id
    bob = jobs.permissions(shared, BOB)
    assert (bob.can_see_faces, bob.can_download) == (True, True)
    assert not (bob.manages or bob.can_cancel or bob.can_delete or bob.can_share or bob.can_see_dataset_name)
    jobs.share(finished, ALICE, shared=False)
    assert not jobs.permissions(jobs.get_run(finished), BOB).can_see_faces

    # The teacher manages everyone's runs, and the runs of no one.
    assert jobs.permissions(jobs.get_run(nobodys), TEACHER).can_cancel
    jobs.cancel(running, user=TEACHER)
    jobs.cancel(nobodys, user=TEACHER)
    assert (root / running / "cancel").exists() and jobs.get_run(nobodys).state == "cancelled"
    jobs.delete_run(finished, user=TEACHER)
    assert not (root / finished).exists()


def test_single_user_mode_lets_its_one_user_do_everything(tiny_builtin, ferlab_dirs, fake_worker):
    root = ferlab_dirs["runs"]
    running = fake_running_run(root, fake_worker)
    finished = fake_finished_run(root, tiny_builtin)
    set_job(root / finished, owner=ALICE.id)
    assert jobs.permissions(jobs.get_run(finished), BOB) == jobs.Permissions(*[True] * 7)
    assert jobs.permissions(jobs.get_run(running), None).can_cancel  # a run of no one, as today
    jobs.cancel(running)
    jobs.delete_run(finished, user=BOB)
    assert (root / running / "cancel").exists() and not (root / finished).exists()


def test_runs_record_their_owner_and_each_owner_gets_their_own_dataset_copy(
    hosted, tiny_builtin, ferlab_dirs
):
    root = ferlab_dirs["runs"]
    with slot_held(root):
        with pytest.raises(jobs.JobError, match="every run needs an owner"):
            jobs.submit(tiny_builtin, ONE_EPOCH)
        first = jobs.submit(tiny_builtin, ONE_EPOCH, owner=ALICE.id)
        second = jobs.submit(tiny_builtin, ONE_EPOCH, owner=ALICE.id)
        bobs = jobs.submit(tiny_builtin, ONE_EPOCH, owner=BOB.id)
        ids = (first, second, bobs)
        wait_for(lambda: all(worker_pid(run_id) for run_id in ids), 30, "the workers to start")
        jobs_json = {run_id: json.loads((root / run_id / "job.json").read_text()) for run_id in ids}
        assert [jobs_json[run_id]["owner"] for run_id in ids] == [ALICE.id, ALICE.id, BOB.id]
        alice_file = Path(jobs_json[first]["dataset"]["path"])
        bob_file = Path(jobs_json[bobs]["dataset"]["path"])
        assert alice_file.parent == root / "_datasets" / ALICE.id and alice_file.is_file()
        assert bob_file.parent == root / "_datasets" / BOB.id and bob_file.is_file()
        assert alice_file.name == bob_file.name  # same content, two copies: neither reaches the other's
        assert jobs_json[second]["dataset"]["path"] == str(alice_file)  # saved once per owner
        pids = [worker_pid(run_id) for run_id in ids]
        for run_id, user in zip(ids, (ALICE, ALICE, BOB)):
            jobs.cancel(run_id, user=user)
        wait_for(lambda: all(pid_gone(pid) for pid in pids), 30, "the queued workers to exit")

    with pytest.raises(jobs.JobError, match="someone else's"):
        jobs.delete_run(bobs, user=ALICE)
    jobs.delete_run(first, user=ALICE)
    assert alice_file.is_file()  # her other run still uses it
    jobs.delete_run(second, user=ALICE)
    assert not alice_file.exists() and bob_file.is_file()
    jobs.delete_run(bobs, user=BOB)
    assert not bob_file.exists()


def test_quotas_refuse_when_hosted_and_not_in_single_user_mode(
    monkeypatch, tiny_builtin, ferlab_dirs, fake_worker
):
    root = ferlab_dirs["runs"]
    for number in range(2):
        active_run(root, f"20261120-09000{number}-0000", ALICE.id, fake_worker)
    big = jobs.get_run(fake_finished_run(root, tiny_builtin)).run_dir
    set_job(big, owner=BOB.id)
    (big / "padding.bin").write_bytes(bytes(1 << 20))
    monkeypatch.setenv("FERLAB_MAX_USER_DISK_MB", "1")
    grid_of_six = {"batch_size": [16, 32, 64], "epochs": [1, 2]}
    grid_of_three = {"batch_size": [16, 32, 64]}
    requests = {
        "epochs": lambda: jobs.submit(
            tiny_builtin, replace(ONE_EPOCH, epochs=101), owner=users.LOCAL_USER.id
        ),
        "runs": lambda: jobs.submit(tiny_builtin, ONE_EPOCH, owner=ALICE.id),
        "sweep": lambda: jobs.sweep(tiny_builtin, ONE_EPOCH, grid_of_six, owner=users.LOCAL_USER.id),
        "sweep runs": lambda: jobs.sweep(tiny_builtin, ONE_EPOCH, grid_of_three, owner=ALICE.id),
        "disk": lambda: jobs.submit(tiny_builtin, ONE_EPOCH, owner=BOB.id),
    }
    expected = {
        "epochs": "at most 100 epochs on this server, not 101 (the class limit, FERLAB_MAX_EPOCHS=100)",
        "runs": "You already have 2 runs queued or training (the class limit, FERLAB_MAX_RUNS_PER_USER=2)",
        "sweep": "A sweep of 6 runs is more than this server allows (the class limit, FERLAB_MAX_SWEEP_RUNS=4)",
        "sweep runs": "would give you 5 runs queued or training (the class limit, FERLAB_MAX_SWEEP_RUNS=4)",
        "disk": "(the class limit, FERLAB_MAX_USER_DISK_MB=1): delete some of your runs to free space.",
    }
    monkeypatch.setenv("FERLAB_HOSTED", "1")
    for name, request in requests.items():
        with pytest.raises(QuotaError, match=re.escape(expected[name])):
            request()
    assert not (root / "_datasets").exists()  # a refused run saves nothing

    # A single-user FER Lab has none of these quotas: every request is queued. (Only the gate
    # matters here; test_jobs covers queueing, so the runs are recorded rather than started.)
    queued = []
    monkeypatch.setattr(jobs, "_queue", lambda *args, **kwargs: queued.append(kwargs["owner"]) or "queued")
    monkeypatch.delenv("FERLAB_HOSTED")
    for request in requests.values():
        request()
    assert len(queued) == 1 + 1 + 6 + 3 + 1


# --- the pages ----------------------------------------------------------------------------------


def train_page(visitor: str, source: str) -> AppTest:
    at = AppTest.from_file(TRAIN, default_timeout=TIMEOUT)
    at.query_params[VISITOR_PARAM] = visitor
    at.session_state["dataset_source"] = source
    at.session_state["dataset_label"] = "tiny built-in"
    return at


def labels(at: AppTest, kind: str) -> list[str]:
    return [element.label for element in at.get(kind)]


def shown(at: AppTest) -> str:
    kinds = ("markdown", "caption", "info", "success", "warning", "error", "subheader", "text")
    return "\n".join(str(element.value) for kind in kinds for element in at.get(kind))


def alices_runs(root: Path, dataset, pid: int, model_dir: Path) -> tuple[str, str]:
    """Alice's running run (the newest) and her finished one, with validation faces and a model."""
    running = fake_running_run(root, pid)
    finished = fake_finished_run(root, dataset)
    shutil.copytree(model_dir, root / finished / "model")
    for run_id in (running, finished):
        set_job(root / run_id, owner=ALICE.id, dataset={"label": "alice_family_photos.zip"})
    return running, finished


def test_classmates_see_no_faces_downloads_or_controls_of_each_others_runs(
    hosted, tiny_source, tiny_builtin, ferlab_dirs, fake_worker, tiny_model_dir
):
    running, finished = alices_runs(ferlab_dirs["runs"], tiny_builtin, fake_worker, tiny_model_dir)
    alice, bob = train_page(ALICE_KEY, tiny_source).run(), train_page(BOB_KEY, tiny_source).run()
    for at in (alice, bob):
        assert not at.exception, at.exception
        assert at.session_state["train_run"] == running
        assert at.get("plotly_chart")  # everyone sees the curves
    assert at.session_state["ferlab_user"] == BOB
    assert "Cancel this run" in labels(alice, "button") and "alice_family_photos" in shown(alice)
    assert "Cancel this run" not in labels(bob, "button") and "alice_family_photos" not in shown(bob)
    assert "A classmate's run" in shown(bob)

    for at in (alice, bob):
        at.selectbox(key="train_run").set_value(finished).run()
        assert not at.exception, at.exception
        assert "Confusion matrix" in shown(at)  # and the scores
    assert alice.tabs[2].get("image") and alice.get("download_button")
    assert {"Delete for good", "Use this model"} <= set(labels(alice, "button"))
    assert "Share with the class" in labels(alice, "toggle")
    assert not bob.tabs[2].get("image") and not bob.get("download_button")
    assert not {"Delete for good", "Use this model", "Convert to TFLite"} & set(labels(bob, "button"))
    assert not bob.get("toggle") or "Share with the class" not in labels(bob, "toggle")
    assert "Only its owner and the teacher see this run's validation faces" in shown(bob)
    [table] = [frame.value for frame in bob.dataframe if "dataset" in frame.value.columns]
    assert set(table["dataset"]) == {"(its owner's)"} and set(table["whose"]) == {"classmate"}

    # Alice shares the run: Bob now sees its faces and may download its model, still no controls.
    alice.toggle(key=f"train_share_{finished}_False").set_value(True).run()
    assert not alice.exception, alice.exception
    bob.run()
    assert bob.tabs[2].get("image") and bob.get("download_button")
    assert "Delete for good" not in labels(bob, "button") and "shared with the class" in shown(bob)


def test_the_teacher_code_unlocks_everyones_runs(
    hosted, monkeypatch, tiny_source, tiny_builtin, ferlab_dirs, fake_worker, tiny_model_dir
):
    monkeypatch.setenv("FERLAB_TEACHER_CODE", "sesame")
    running, finished = alices_runs(ferlab_dirs["runs"], tiny_builtin, fake_worker, tiny_model_dir)
    bob = train_page(BOB_KEY, tiny_source).run()
    assert "Cancel this run" not in labels(bob, "button")
    bob.text_input(key="ferlab_teacher_code").input("open up")
    next(b for b in bob.button if b.label == "Unlock").click().run()
    assert "That is not the teacher code." in [e.value for e in bob.error]
    assert not bob.session_state["ferlab_user"].is_teacher

    bob.text_input(key="ferlab_teacher_code").input("sesame")
    next(b for b in bob.button if b.label == "Unlock").click().run()
    assert not bob.exception, bob.exception
    assert bob.session_state["ferlab_user"] == replace(BOB, is_teacher=True)
    assert "Cancel this run" in labels(bob, "button") and "alice_family_photos" in shown(bob)
    bob.selectbox(key="train_run").set_value(finished).run()
    assert bob.tabs[2].get("image") and bob.get("download_button")
    [table] = [frame.value for frame in bob.dataframe if "dataset" in frame.value.columns]
    assert set(table["whose"]) == {ALICE.id}  # the teacher sees whose runs they are
    next(b for b in bob.button if b.label == "Delete for good").click().run()
    assert not bob.exception, bob.exception
    assert not (ferlab_dirs["runs"] / finished).exists()

    next(b for b in bob.button if b.label == "Leave teacher mode").click().run()
    assert not bob.session_state["ferlab_user"].is_teacher
    assert "Cancel this run" not in labels(bob, "button")


def test_a_markdown_and_html_run_name_renders_literally(hosted, tiny_source, tiny_builtin, ferlab_dirs):
    markdown_it = pytest.importorskip("markdown_it")
    finished = fake_finished_run(ferlab_dirs["runs"], tiny_builtin)
    set_job(ferlab_dirs["runs"] / finished, owner=ALICE.id, name=HOSTILE_NAME)
    at = train_page(BOB_KEY, tiny_source).run()
    assert not at.exception, at.exception

    # Wherever Markdown shows the name, it renders as its own characters: no bold, image or link.
    render = markdown_it.MarkdownIt("commonmark").render
    carriers = [text for text in shown(at).splitlines() if "bold" in text]
    assert carriers
    for text in carriers:
        rendered = render(text)
        assert not re.search(r"<(strong|em|img|a)\b", rendered), rendered
    [header] = [s.value for s in at.subheader if "bold" in s.value]
    assert html.unescape(re.sub(r"<[^>]+>", "", render(header))).strip() == f"✅ {HOSTILE_NAME}"
    assert render(literal("1. _x_ $y$ :red[z] a_b")).count("<") == 2  # just the paragraph
    # Plain-text places show it as it is; the chart legend gets it HTML-escaped.
    assert any(HOSTILE_NAME in option for option in at.selectbox(key="train_run").options)
    [leaderboard] = [frame.value for frame in at.dataframe if "rank" in frame.value.columns]
    assert list(leaderboard["name"]) == [HOSTILE_NAME]
    legends = [chart.proto.spec for chart in at.get("plotly_chart") if "bold" in chart.proto.spec]
    assert legends and all("<img" not in spec and "&lt;img" in spec for spec in legends)


def test_the_class_code_gate_blocks_every_page_until_the_right_code(hosted, monkeypatch, tiny_source):
    monkeypatch.setenv("FERLAB_CLASS_CODE", "owl-42")
    at = train_page(ALICE_KEY, tiny_source).run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["🙂 FER Lab"] and not at.get("plotly_chart")
    assert "Start training" not in labels(at, "button") and not at.sidebar.get("text")

    at.text_input(key="ferlab_class_code").input("owl-41")
    next(b for b in at.button if b.label == "Enter").click().run()
    assert [e.value for e in at.error] == ["That is not the class code: ask your teacher for it."]
    assert "Start training" not in labels(at, "button")

    at.text_input(key="ferlab_class_code").input("owl-42")
    next(b for b in at.button if b.label == "Enter").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Train a model" and "Start training" in labels(at, "button")

    # A refresh (a new session on the same address) does not ask again; another visitor is asked.
    again = train_page(ALICE_KEY, tiny_source)
    again.query_params[CLASS_PASS_PARAM] = at.query_params[CLASS_PASS_PARAM]
    assert again.run().title[0].value == "Train a model"
    stranger = train_page(BOB_KEY, tiny_source)
    stranger.query_params[CLASS_PASS_PARAM] = at.query_params[CLASS_PASS_PARAM]
    assert stranger.run().title[0].value == "🙂 FER Lab"


def test_a_quota_refusal_is_shown_as_its_sentence(hosted, monkeypatch, tiny_source):
    monkeypatch.setenv("FERLAB_MAX_EPOCHS", "5")
    at = train_page(ALICE_KEY, tiny_source).run()
    assert "at most 2 of your runs queued or training" in shown(at)
    at.number_input(key="train_epochs").set_value(6)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [
        "A run may train at most 5 epochs on this server, not 6 (the class limit, FERLAB_MAX_EPOCHS=5): "
        "choose fewer epochs."
    ]
    assert jobs.list_runs() == []


def test_the_dataset_page_counts_uploads_against_the_session_quota(hosted, monkeypatch, tiny_builtin):
    monkeypatch.setenv("FERLAB_MAX_UPLOAD_MB", "1")
    at = AppTest.from_file(DATASET, default_timeout=TIMEOUT)
    at.query_params[VISITOR_PARAM] = ALICE_KEY
    at.run()
    at.selectbox(key="dataset_choice").set_value("⬆️ Upload a file…").run()
    assert not at.exception, at.exception
    assert "Where your upload goes" in shown(at) and "deleting your last run" in shown(at)

    csv = to_fer2013_csv(tiny_builtin)  # 140 faces, about 1.2 MB: over the 1 MB quota alone
    small = to_fer2013_csv(tiny_builtin.subset("val"))
    assert len(small) < (1 << 20) // 2 < len(csv)
    at.file_uploader[0].set_value(("a_b.csv", small, "text/csv")).run()
    assert not at.exception, at.exception
    assert not at.error and at.metric[0].value == f"{len(tiny_builtin.subset('val')):,}"
    at.file_uploader[0].set_value(("**big**.csv", csv, "text/csv")).run()
    assert not at.exception, at.exception
    [error] = [e.value for e in at.error]
    assert error.startswith("This upload would bring what you uploaded in this session to ")
    assert error.endswith(
        "(the class limit, FERLAB_MAX_UPLOAD_MB=1): reload the page to start a new session "
        "(your runs stay), or upload a smaller file."
    )


def test_a_login_is_who_the_provider_says_and_without_one_the_page_waits(hosted, tiny_source):
    at = train_page(ALICE_KEY, tiny_source)
    at.user = {"is_logged_in": False}  # what st.user says where [auth] is set up
    at.run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["🙂 FER Lab"] and "Log in" in labels(at, "button")
    assert "Start training" not in labels(at, "button")

    claims = {"iss": "https://idp.example", "sub": "42", "email": "alice@school.example", "name": "Alice A."}
    at.user = {"is_logged_in": True, **claims}
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["ferlab_user"] == users.logged_in(
        "https://idp.example|42", "Alice A.", claims["email"]
    )
    assert at.session_state["ferlab_user"].id.startswith("alice-")
    assert {"Start training", "Log out"} <= set(labels(at, "button"))
    assert "Alice A." in [text.value for text in at.sidebar.text]

    # Without [auth], st.user proves nothing: AppTest's made-up email leaves the visitor anonymous.
    assert train_page(ALICE_KEY, tiny_source).run().session_state["ferlab_user"] == ALICE


def test_a_classmates_model_is_offered_to_other_pages_only_once_shared(
    hosted, tiny_builtin, ferlab_dirs, tiny_model_dir
):
    finished = fake_finished_run(ferlab_dirs["runs"], tiny_builtin)
    shutil.copytree(tiny_model_dir, ferlab_dirs["runs"] / finished / "model")
    set_job(ferlab_dirs["runs"] / finished, owner=ALICE.id)

    def pick_a_model():
        import streamlit as st

        from ui.common import model_choices, page_setup

        page_setup("Models")
        st.session_state["offered"] = list(model_choices())

    def offered(visitor: str) -> list[str]:
        at = AppTest.from_function(pick_a_model, default_timeout=TIMEOUT)
        at.query_params[VISITOR_PARAM] = visitor
        at.run()
        assert not at.exception, at.exception
        return at.session_state["offered"]

    label = f"finished run (run {finished})"  # the name it was given, and its id
    assert label in offered(ALICE_KEY)
    assert label not in offered(BOB_KEY)  # the Photo and Webcam pages' model picker
    jobs.share(finished, ALICE)
    assert label in offered(BOB_KEY)


@pytest.mark.parametrize("login", [False, True], ids=["teacher-code", "logged-in"])
def test_the_first_visit_to_the_whole_app_asks_who_you_are_once(hosted, monkeypatch, login):
    # Through app.py the frame restores the visitor's choices before the page runs: the sidebar's
    # teacher form (or log-out button) must still be drawn once, not once there and once by the page.
    monkeypatch.setenv("FERLAB_TEACHER_CODE", "sesame-1234")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params[VISITOR_PARAM] = ALICE_KEY
    if login:
        at.user = {"is_logged_in": True, "iss": "https://idp.example", "sub": "7", "name": "Alice A."}
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert [t.value for t in at.title] == ["🙂 FER Lab"]
    if login:
        assert labels(at, "button").count("Log out") == 1
