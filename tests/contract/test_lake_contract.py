"""One behaviour contract for every lake backend (local, and lakeFS through its real client)."""

from __future__ import annotations

import pandas as pd
import pytest
from tideline.core.errors import (
    BranchExists,
    DirtyBranch,
    InvalidName,
    InvalidPath,
    InvalidRef,
    LakeError,
    MergeConflict,
    ObjectNotFound,
    ObjectTooLarge,
    RefNotFound,
)
from tideline.lake.base import MAIN, MAX_PATH_BYTES, MIN_ABBREVIATION, Change, Lake
from tideline.lake.publish import publish
from tideline.lake.tables import read_frame, write_table


def committed(lake: Lake, branch: str, files: dict[str, bytes], message: str = "c") -> str:
    for path, data in files.items():
        lake.put(branch, path, data)
    return lake.commit(branch, message).id


class TestBranches:
    def test_new_repository_has_main_with_one_commit(self, lake: Lake) -> None:
        assert list(lake.branches()) == [MAIN]
        assert len(lake.log(MAIN)) == 1
        assert lake.list(MAIN) == []

    def test_create_list_delete(self, lake: Lake) -> None:
        head = lake.resolve(MAIN)
        assert lake.create_branch("dev") == head
        assert lake.branches() == {"dev": head, MAIN: head}
        lake.delete_branch("dev")
        assert list(lake.branches()) == [MAIN]

    def test_create_existing_branch_is_refused(self, lake: Lake) -> None:
        lake.create_branch("dev")
        with pytest.raises(BranchExists, match="dev"):
            lake.create_branch("dev")

    @pytest.mark.parametrize("name", ["", "a/b", "-x", "has space", "dots..", "é"])
    def test_invalid_branch_names_are_named(self, lake: Lake, name: str) -> None:
        with pytest.raises(InvalidName, match="invalid branch name"):
            lake.create_branch(name)

    def test_unknown_refs_are_named(self, lake: Lake) -> None:
        with pytest.raises(RefNotFound, match="nosuch"):
            lake.resolve("nosuch")
        with pytest.raises(RefNotFound, match="nosuch"):
            lake.create_branch("x", "nosuch")
        with pytest.raises(RefNotFound, match="nosuch"):
            lake.delete_branch("nosuch")
        with pytest.raises(RefNotFound):
            lake.put("nosuch", "a.txt", b"x")

    def test_branch_from_a_commit(self, lake: Lake) -> None:
        lake.create_branch("dev")
        first = committed(lake, "dev", {"a.txt": b"1"})
        committed(lake, "dev", {"a.txt": b"2"})
        lake.create_branch("old", first)
        assert lake.get("old", "a.txt") == b"1"
        assert lake.get("dev~1", "a.txt") == b"1"


class TestObjects:
    def test_write_read_list_delete(self, lake: Lake) -> None:
        lake.create_branch("dev")
        info = lake.put("dev", "raw/b.txt", b"bee")
        lake.put("dev", "raw/a.txt", b"a")
        lake.put("dev", "other/c.txt", b"c")
        assert info.size == 3
        assert lake.get("dev", "raw/b.txt") == b"bee"
        assert [o.path for o in lake.list("dev", "raw/")] == ["raw/a.txt", "raw/b.txt"]
        assert lake.exists("dev", "raw/a.txt") and not lake.exists(MAIN, "raw/a.txt")
        lake.delete("dev", "raw/a.txt")
        assert not lake.exists("dev", "raw/a.txt")
        with pytest.raises(ObjectNotFound, match="raw/a.txt"):
            lake.get("dev", "raw/a.txt")

    def test_overwrite_replaces_content(self, lake: Lake) -> None:
        lake.put(MAIN, "x.bin", b"one")
        lake.put(MAIN, "x.bin", b"two!")
        assert lake.get(MAIN, "x.bin") == b"two!"
        assert lake.stat(MAIN, "x.bin").size == 4

    @pytest.mark.parametrize("path", ["", "/abs/x", "a/../b", "../x", "a//b", "./a", "a\\b"])
    def test_bad_paths_are_rejected_by_name(self, lake: Lake, path: str) -> None:
        with pytest.raises(InvalidPath, match="invalid object path"):
            lake.put(MAIN, path, b"x")
        with pytest.raises(InvalidPath):
            lake.exists(MAIN, path)

    def test_object_too_large_for_memory(self, lake: Lake) -> None:
        lake.put(MAIN, "big.bin", b"x" * 100)
        lake.max_read_bytes = 10
        with pytest.raises(ObjectTooLarge, match="big.bin"):
            lake.get(MAIN, "big.bin")
        with lake.reader(MAIN, "big.bin") as stream:
            assert stream.read() == b"x" * 100

    def test_tables_round_trip_as_parquet(self, lake: Lake) -> None:
        frame = pd.DataFrame(
            {
                "customer_id": [3, 1, 2],
                "amount": [1.5, None, 2.25],
                "segment": ["a", "b", None],
                "ts": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"], utc=True),
            }
        )
        write_table(lake, MAIN, "tables/tx.parquet", frame)
        pd.testing.assert_frame_equal(read_frame(lake, MAIN, "tables/tx.parquet"), frame)

    def test_failed_write_leaves_nothing(self, lake: Lake) -> None:
        with pytest.raises(RuntimeError), lake.writer(MAIN, "partial.bin") as sink:
            sink.write(b"half")
            raise RuntimeError("source broke")
        assert not lake.exists(MAIN, "partial.bin")
        assert lake.uncommitted(MAIN) == []


class TestCommits:
    def test_reads_from_a_commit_see_only_committed_data(self, lake: Lake) -> None:
        lake.create_branch("dev")
        first = committed(lake, "dev", {"a.txt": b"1"})
        lake.put("dev", "a.txt", b"2")
        assert lake.uncommitted("dev") == [Change("a.txt", "changed", 1)]
        assert lake.get("dev", "a.txt") == b"2"
        assert lake.get(first, "a.txt") == b"1"

    def test_commit_records_message_metadata_and_parent(self, lake: Lake) -> None:
        parent = lake.resolve(MAIN)
        lake.put(MAIN, "a.txt", b"1")
        commit = lake.commit(MAIN, "load a", {"run_id": "r1", "rows": "1"})
        assert commit.message == "load a"
        assert commit.metadata == {"run_id": "r1", "rows": "1"}
        assert commit.parents == (parent,)
        assert lake.log(MAIN)[0] == commit
        assert lake.get_commit(commit.id) == commit

    def test_commit_with_nothing_to_commit_returns_the_head(self, lake: Lake) -> None:
        head = lake.resolve(MAIN)
        assert lake.commit(MAIN, "empty").id == head
        lake.put(MAIN, "a.txt", b"1")
        first = lake.commit(MAIN, "a").id
        lake.put(MAIN, "a.txt", b"1")  # same bytes again: nothing changes
        assert lake.commit(MAIN, "again").id == first
        assert len(lake.log(MAIN)) == 2

    def test_metadata_must_be_strings(self, lake: Lake) -> None:
        lake.put(MAIN, "a.txt", b"1")
        with pytest.raises(LakeError, match="rows"):
            lake.commit(MAIN, "m", {"rows": 3})  # type: ignore[dict-item]

    def test_log_is_newest_first_and_limited(self, lake: Lake) -> None:
        for i in range(4):
            committed(lake, MAIN, {"a.txt": str(i).encode()}, message=f"c{i}")
        assert [c.message for c in lake.log(MAIN, limit=3)] == ["c3", "c2", "c1"]

    def test_reset_drops_uncommitted_changes(self, lake: Lake) -> None:
        committed(lake, MAIN, {"keep.txt": b"k"})
        lake.put(MAIN, "drop.txt", b"d")
        lake.delete(MAIN, "keep.txt")
        lake.reset(MAIN)
        assert lake.uncommitted(MAIN) == []
        assert [o.path for o in lake.list(MAIN)] == ["keep.txt"]

    def test_revert_undoes_one_commit(self, lake: Lake) -> None:
        committed(lake, MAIN, {"a.txt": b"1"})
        bad = committed(lake, MAIN, {"a.txt": b"2", "b.txt": b"b"})
        committed(lake, MAIN, {"c.txt": b"c"})
        revert = lake.revert(MAIN, bad)
        assert lake.get(MAIN, "a.txt") == b"1"
        assert not lake.exists(MAIN, "b.txt")
        assert lake.exists(MAIN, "c.txt")
        assert lake.resolve(MAIN) == revert.id


class TestMerges:
    def test_merge_publishes_a_branch(self, lake: Lake) -> None:
        lake.create_branch("dev")
        committed(lake, "dev", {"a.txt": b"1"})
        merge = lake.merge("dev", MAIN, metadata={"run_id": "r"})
        assert lake.get(MAIN, "a.txt") == b"1"
        assert len(merge.parents) == 2
        assert merge.metadata == {"run_id": "r"}

    def test_merging_again_is_a_no_op(self, lake: Lake) -> None:
        lake.create_branch("dev")
        committed(lake, "dev", {"a.txt": b"1"})
        merge = lake.merge("dev", MAIN)
        assert lake.merge("dev", MAIN).id == merge.id
        assert lake.resolve(MAIN) == merge.id

    def test_three_way_merge_keeps_both_sides(self, lake: Lake) -> None:
        committed(lake, MAIN, {"shared.txt": b"s", "gone.txt": b"g"})
        lake.create_branch("a")
        lake.create_branch("b")
        committed(lake, "a", {"a.txt": b"a"})
        lake.delete("b", "gone.txt")
        committed(lake, "b", {"b.txt": b"b"})
        lake.merge("a", MAIN)
        lake.merge("b", MAIN)
        assert [o.path for o in lake.list(MAIN)] == ["a.txt", "b.txt", "shared.txt"]

    def test_conflict_names_paths_and_changes_nothing(self, lake: Lake) -> None:
        committed(lake, MAIN, {"x.txt": b"0", "y.txt": b"0"})
        lake.create_branch("dev")
        committed(lake, "dev", {"x.txt": b"dev", "z.txt": b"z"})
        main_head = committed(lake, MAIN, {"x.txt": b"main"})
        dev_head = lake.resolve("dev")
        with pytest.raises(MergeConflict, match="x.txt") as info:
            lake.merge("dev", MAIN)
        assert info.value.paths == ["x.txt"]
        assert lake.resolve(MAIN) == main_head and lake.resolve("dev") == dev_head
        assert lake.get(MAIN, "x.txt") == b"main" and not lake.exists(MAIN, "z.txt")

    def test_merge_into_a_dirty_branch_is_refused(self, lake: Lake) -> None:
        lake.create_branch("dev")
        committed(lake, "dev", {"a.txt": b"1"})
        lake.put(MAIN, "wip.txt", b"w")
        with pytest.raises(DirtyBranch, match=MAIN):
            lake.merge("dev", MAIN)


class TestDiffsAndTags:
    def test_diff_lists_added_changed_removed(self, lake: Lake) -> None:
        before = committed(lake, MAIN, {"same.txt": b"s", "change.txt": b"1", "remove.txt": b"r"})
        lake.put(MAIN, "change.txt", b"22")
        lake.delete(MAIN, "remove.txt")
        lake.put(MAIN, "add.txt", b"add")
        after = lake.commit(MAIN, "edit").id
        assert lake.diff(before, after) == [
            Change("add.txt", "added", 3),
            Change("change.txt", "changed", 2),
            Change("remove.txt", "removed", 1),
        ]
        assert {c.kind for c in lake.diff(after, before)} == {"added", "changed", "removed"}
        assert lake.diff(after, after) == []

    def test_tags_pin_a_commit(self, lake: Lake) -> None:
        first = committed(lake, MAIN, {"a.txt": b"1"})
        assert lake.tag("v1", MAIN) == first
        committed(lake, MAIN, {"a.txt": b"2"})
        assert lake.get("v1", "a.txt") == b"1"
        assert lake.tags() == {"v1": first}
        assert lake.tag("v1", first) == first  # same target again: fine
        with pytest.raises(BranchExists, match="v1"):
            lake.tag("v1", MAIN)
        with pytest.raises(InvalidName):
            lake.tag("bad tag", MAIN)
        lake.delete_tag("v1")
        assert lake.tags() == {}
        with pytest.raises(RefNotFound, match="v1"):
            lake.delete_tag("v1")
        assert lake.tag("v1", MAIN) != first  # the name is free again


class TestWriteAuditPublish:
    def test_success_merges_and_removes_the_run_branch(self, lake: Lake) -> None:
        with publish(lake, "r1", message="load", metadata={"source": "crm"}) as run:
            lake.put(run.branch, "raw/a.txt", b"a")
            assert not lake.exists(MAIN, "raw/a.txt")
        assert lake.get(MAIN, "raw/a.txt") == b"a"
        assert run.published is not None and lake.resolve(MAIN) == run.published.id
        assert run.published.metadata["run_id"] == "r1"
        assert "run-r1" not in lake.branches()

    def test_failure_keeps_branch_and_main(self, lake: Lake) -> None:
        main_before = lake.resolve(MAIN)
        with pytest.raises(ValueError), publish(lake, "r2", message="load") as run:
            lake.put(run.branch, "raw/bad.txt", b"bad")
            raise ValueError("quality gate failed")
        assert lake.resolve(MAIN) == main_before
        assert lake.get("run-r2", "raw/bad.txt") == b"bad"

    def test_rerun_is_idempotent(self, lake: Lake) -> None:
        def run_once() -> str:
            with publish(lake, "r3", message="load") as run:
                lake.put(run.branch, "raw/a.txt", b"a")
            return lake.resolve(MAIN)

        first = run_once()
        assert run_once() == first
        assert [o.path for o in lake.list(MAIN)] == ["raw/a.txt"]

    def test_rerun_after_failure_starts_clean(self, lake: Lake) -> None:
        with pytest.raises(ValueError), publish(lake, "r4", message="load") as run:
            lake.put(run.branch, "raw/partial.txt", b"p")
            raise ValueError("crash")
        with publish(lake, "r4", message="load") as run:
            lake.put(run.branch, "raw/full.txt", b"f")
        assert [o.path for o in lake.list(MAIN)] == ["raw/full.txt"]


class TestRefsAndNames:
    """lakeFS's rules for refs and names, kept alike by the embedded lake (`tideline.lake.base`)."""

    def test_a_commit_is_named_by_seven_or_more_characters_of_its_id(self, lake: Lake) -> None:
        head = committed(lake, MAIN, {"a.txt": b"1"})
        assert lake.resolve(head[:MIN_ABBREVIATION]) == lake.resolve(head[:20]) == head
        assert lake.get(head[:10], "a.txt") == b"1"
        for short in (head[:1], head[:4], head[:MIN_ABBREVIATION - 1]):
            with pytest.raises(RefNotFound, match="too short to name a commit"):
                lake.resolve(short)
        missing = "f" * 12 if not head.startswith("f") else "e" * 12
        with pytest.raises(RefNotFound, match=missing):
            lake.resolve(missing)

    def test_a_branch_named_like_a_hex_prefix_is_the_branch(self, lake: Lake) -> None:
        committed(lake, MAIN, {"a.txt": b"1"})
        lake.create_branch("cafe")
        lake.put("cafe", "a.txt", b"2")
        branch_head = lake.commit("cafe", "on cafe").id
        assert lake.resolve("cafe") == branch_head
        assert lake.get("cafe", "a.txt") == b"2"
        with pytest.raises(RefNotFound, match="'2026'"):  # no branch, and too short for a commit
            lake.get("2026", "a.txt")

    def test_parent_modifiers(self, lake: Lake) -> None:
        base = committed(lake, MAIN, {"a.txt": b"1"})
        lake.create_branch("dev")
        theirs = committed(lake, "dev", {"b.txt": b"2"})
        ours = committed(lake, MAIN, {"c.txt": b"3"})
        merge = lake.merge("dev", MAIN).id
        assert lake.resolve(f"{MAIN}^") == lake.resolve(f"{MAIN}^1") == lake.resolve(
            f"{MAIN}~1") == ours
        assert lake.resolve(f"{MAIN}^2") == theirs
        assert lake.resolve(f"{MAIN}^0") == merge
        assert lake.resolve(f"{MAIN}~2") == lake.resolve(f"{MAIN}^2~1") == base
        with pytest.raises(RefNotFound):
            lake.resolve(f"{MAIN}^3")

    @pytest.mark.parametrize("ref", ["main~x", "main^^x", "~1", "main~1~y"])
    def test_malformed_ref_expressions_are_named(self, lake: Lake, ref: str) -> None:
        with pytest.raises(InvalidRef, match="malformed ref expression"):
            lake.resolve(ref)
        with pytest.raises(InvalidRef, match="malformed ref expression"):
            lake.get(ref, "a.txt")

    def test_no_branch_or_tag_takes_a_commit_id_or_the_other_kind_of_name(
        self, lake: Lake
    ) -> None:
        head = committed(lake, MAIN, {"a.txt": b"1"})
        with pytest.raises(BranchExists, match="a commit has that id"):
            lake.create_branch(head)
        with pytest.raises(BranchExists, match="a commit has that id"):
            lake.tag(head, MAIN)
        lake.create_branch("dev")
        lake.tag("v1", MAIN)
        with pytest.raises(BranchExists, match="a tag has that name"):
            lake.create_branch("v1")
        with pytest.raises(BranchExists, match="a branch has that name"):
            lake.tag("dev", MAIN)

    @pytest.mark.parametrize("name", ["v1.", "a..b", "x.lock", "-v1", "v/1", "has space"])
    def test_invalid_tag_names_are_named(self, lake: Lake, name: str) -> None:
        with pytest.raises(InvalidName, match="invalid tag name"):
            lake.tag(name, MAIN)

    def test_dotted_tags_are_fine(self, lake: Lake) -> None:
        head = lake.resolve(MAIN)
        assert lake.tag("v1.0", MAIN) == lake.tag("release_2026.12.06", MAIN) == head

    def test_paths_longer_than_1024_bytes_are_refused(self, lake: Lake) -> None:
        longest = "d/" + "x" * (MAX_PATH_BYTES - 2)
        lake.put(MAIN, longest, b"ok")
        assert lake.get(MAIN, longest) == b"ok"
        for path in (longest + "y", "d/" + "é" * 512):
            with pytest.raises(InvalidPath, match="over lakeFS's limit of 1024"):
                lake.put(MAIN, path, b"no")
