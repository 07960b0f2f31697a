"""The batch plan: ratios, kind-pure batches, the rank split (disjoint records across ranks), determinism, resume."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from data_loaders.errors import DataError
from data_loaders.sampler import STREAMS, BatchPlanner, assign_shards, split_records

VIDEO = list(range(0, 40))
IMAGE = list(range(40, 440))
DELETE = list(range(440, 450))  # video records with task "delete"
GROUPS = ["video/add_modify"] * 40 + ["image/add_modify"] * 400 + ["video/delete"] * 10


def rank_pools(rank: int, world_size: int, seed: int = 0) -> dict[str, list[int]]:
    """What the loader gives the planner: this rank's split, as streams (delete = every record of the kind)."""
    mine = split_records(GROUPS, seed=seed, rank=rank, world_size=world_size)
    return {
        "video/add_modify": [i for i in mine if i in VIDEO], "video/delete": [i for i in mine if i < 40 or i >= 440],
        "image/add_modify": [i for i in mine if 40 <= i < 440], "image/delete": [i for i in mine if 40 <= i < 440],
    }


def planner(rank: int = 0, world_size: int = 1, seed: int = 0, **kw) -> BatchPlanner:
    args = dict(image_video_ratio=10.0, delete_ratio=0.25, video_batch_size=2, image_batch_size=8, available=STREAMS)
    args.update(kw)
    return BatchPlanner(rank_pools(rank, world_size, seed), seed=seed, rank=rank, world_size=world_size, **args)


def test_ratios_over_many_draws_and_kind_pure_batches():
    p = planner()
    kinds, tasks = Counter(), Counter()
    for _ in range(6000):
        b = p.next_batch()
        kinds[b.kind] += 1
        assert len(b.samples) == (2 if b.kind == "video" else 8)  # batch size per kind
        assert {s.stream.split("/")[0] for s in b.samples} == {b.kind}  # kind-pure
        pool = VIDEO + DELETE if b.kind == "video" else IMAGE
        assert all(s.record in pool for s in b.samples)
        tasks.update(s.stream.split("/")[1] for s in b.samples)
    assert kinds["image"] / kinds["video"] == pytest.approx(10.0, rel=0.12)
    assert tasks["add_modify"] / tasks["delete"] == pytest.approx(3.0, rel=0.05)


def test_ratio_zero_and_missing_kinds():
    assert {planner(image_video_ratio=0).next_batch().kind for _ in range(50)} == {"video"}
    only_images = BatchPlanner({"image/add_modify": IMAGE}, seed=0, rank=0, world_size=1, image_video_ratio=10,
                               delete_ratio=0.25, video_batch_size=1, image_batch_size=1)
    batches = [only_images.next_batch() for _ in range(50)]
    assert {b.kind for b in batches} == {"image"}
    assert {s.stream for b in batches for s in b.samples} == {"image/add_modify"}  # no delete pool: no deletes
    with pytest.raises(ValueError, match="no usable records"):
        BatchPlanner({}, seed=0, rank=0, world_size=1, image_video_ratio=1, delete_ratio=0, video_batch_size=1,
                     image_batch_size=1)


def test_split_records_is_a_deterministic_balanced_partition():
    for world_size in (1, 2, 3, 4):
        shares = [split_records(GROUPS, seed=3, rank=r, world_size=world_size) for r in range(world_size)]
        assert sorted(i for share in shares for i in share) == list(range(len(GROUPS)))  # disjoint, covering
        for group in set(GROUPS):
            counts = [sum(GROUPS[i] == group for i in share) for share in shares]
            assert max(counts) - min(counts) <= 1, (world_size, group, counts)  # each group spread evenly
        assert shares == [split_records(GROUPS, seed=3, rank=r, world_size=world_size) for r in range(world_size)]
    assert split_records(GROUPS, seed=3, rank=0, world_size=2) != split_records(GROUPS, seed=4, rank=0, world_size=2)
    assert assign_shards(5, 0, 2) == [0, 2, 4] and assign_shards(5, 1, 2) == [1, 3]
    with pytest.raises(ValueError, match="rank 2"):
        split_records(GROUPS, seed=0, rank=2, world_size=2)


@pytest.mark.parametrize("world_size", [2, 4])
def test_ranks_use_disjoint_records_in_every_stream_and_stay_in_step(world_size):
    per_rank = {}
    for rank in range(world_size):
        p = planner(rank, world_size, delete_ratio=0.25)
        per_rank[rank] = [p.next_batch() for _ in range(400)]  # several epochs of every stream
    # the same kind, and the same task per slot, at the same step on every rank
    for step in range(400):
        assert len({per_rank[r][step].kind for r in range(world_size)}) == 1
        assert len({tuple(s.stream for s in per_rank[r][step].samples) for r in range(world_size)}) == 1
    # every record a rank draws, in any stream (add/modify, deletion as given or synthesised), over several
    # epochs, is in no other rank's set
    used = [{s.record for b in per_rank[r] for s in b.samples} for r in range(world_size)]
    streams = {s.stream for r in range(world_size) for b in per_rank[r] for s in b.samples}
    assert streams == set(STREAMS)
    for a in range(world_size):
        assert used[a] <= set(split_records(GROUPS, seed=0, rank=a, world_size=world_size))
        for b in range(a + 1, world_size):
            assert not used[a] & used[b]
    # together the ranks cover the data set, and a rank's epoch of a stream covers its pool once
    assert set().union(*used) == set(range(len(GROUPS)))
    p = planner(1, world_size)
    assert sorted(p.rank_share("video/delete", 0)) == sorted(p.pools["video/delete"])


def test_a_rank_missing_a_drawn_stream_is_an_error():
    pools = {"video/add_modify": VIDEO, "video/delete": VIDEO}  # this rank's shards hold no images
    with pytest.raises(DataError, match="rank 1 of 2 has no records for the image/add_modify stream"):
        BatchPlanner(pools, seed=0, rank=1, world_size=2, image_video_ratio=10, delete_ratio=0.25,
                     video_batch_size=1, image_batch_size=1, available=STREAMS)
    # videos only (ratio 0): images are never drawn, so their absence is fine
    p = BatchPlanner(pools, seed=0, rank=1, world_size=2, image_video_ratio=0, delete_ratio=0.25,
                     video_batch_size=1, image_batch_size=1, available=STREAMS)
    assert {p.next_batch().kind for _ in range(20)} == {"video"}
    images = BatchPlanner({"image/add_modify": IMAGE}, seed=0, rank=0, world_size=2, image_video_ratio=float("inf"),
                          delete_ratio=0.0, video_batch_size=1, image_batch_size=1, available=STREAMS)
    assert {images.next_batch().kind for _ in range(20)} == {"image"}  # ratio .inf: images only


def test_epochs_cover_the_pool_and_are_reshuffled():
    p = planner(image_video_ratio=0, delete_ratio=0.0, video_batch_size=1, available=None)
    first = [p.next_batch().samples[0].record for _ in range(40)]
    second = [p.next_batch().samples[0].record for _ in range(40)]
    assert sorted(first) == VIDEO and sorted(second) == VIDEO
    assert first != second
    assert p.state_dict()["streams"]["video/add_modify"] == [1, 40]


def test_deterministic_from_the_seed():
    pa, pb, pc = planner(seed=5), planner(seed=5), planner(seed=6)
    sa = [pa.next_batch().samples for _ in range(30)]
    sb = [pb.next_batch().samples for _ in range(30)]
    sc = [pc.next_batch().samples for _ in range(30)]
    assert sa == sb and sa != sc


def test_resume_neither_repeats_nor_skips():
    p = planner(rank=1, world_size=2)
    batches = [p.next_batch() for _ in range(100)]
    state = json.loads(json.dumps(batches[41].state_after))  # the state travels as JSON
    q = planner(rank=1, world_size=2)
    q.load_state_dict(state)
    resumed = [q.next_batch() for _ in range(58)]
    assert [(b.batch, b.kind, b.samples) for b in resumed] == [(b.batch, b.kind, b.samples) for b in batches[42:]]
    with pytest.raises(ValueError, match="world_size"):
        planner(rank=0, world_size=4).load_state_dict(state)


# --------------------------------------------------------------------------- buckets

NAMES = ["480x720", "432x768", "576x576"]


def bucketed(rank: int = 0, world_size: int = 1, seed: int = 0, names=NAMES, **kw) -> BatchPlanner:
    """Records in buckets by index: video i -> i % 3, images 40..439 -> 0 / 1 / 2 by thirds, deletes -> 2."""
    buckets = [i % 3 for i in range(40)] + [(i - 40) * 3 // 400 for i in range(40, 440)] + [2] * 10
    args = dict(image_video_ratio=10.0, delete_ratio=0.25, video_batch_size=2, image_batch_size=8, available=STREAMS,
                record_buckets=[b % len(names) for b in buckets], bucket_names=names)
    args.update(kw)
    return BatchPlanner(rank_pools(rank, world_size, seed), seed=seed, rank=rank, world_size=world_size, **args)


def test_each_batch_is_one_bucket_and_buckets_come_up_in_proportion():
    p = bucketed()
    of = p.sub_pools
    counts: Counter = Counter()
    for _ in range(3000):
        b = p.next_batch()
        assert {s.bucket for s in b.samples} == {b.bucket}
        assert all(s.record in of[(s.stream, b.bucket)] for s in b.samples)
        counts[(b.kind, b.bucket)] += 1
    images = [counts[("image", k)] for k in range(3)]
    assert min(images) > 0.9 * max(images)  # 133-134 image records per bucket
    videos = [counts[("video", k)] for k in range(3)]
    # bucket 2 also holds the 10 video deletes: 13 + 10 of 50 video records (the delete stream holds them all)
    assert abs(videos[2] / sum(videos) - 23 / 50) < 0.05


def test_a_slot_whose_task_has_no_record_in_the_bucket_takes_the_other_task():
    # the 10 video delete records alone in bucket 1: add_modify slots there become delete slots
    buckets = [0] * 440 + [1] * 10
    p = BatchPlanner(rank_pools(0, 1), seed=0, rank=0, world_size=1, image_video_ratio=0.0, delete_ratio=0.25,
                     video_batch_size=2, image_batch_size=8, available=STREAMS, record_buckets=buckets,
                     bucket_names=NAMES[:2])
    batches = [p.next_batch() for _ in range(400)]
    in_one = [s for b in batches if b.bucket == 1 for s in b.samples]
    assert in_one and all(s.stream == "video/delete" and s.record >= 440 for s in in_one)
    assert abs(sum(b.bucket == 1 for b in batches) / 400 - 10 / 50) < 0.06


def test_bucketed_resume_neither_repeats_nor_skips_and_checks_the_buckets():
    p = bucketed(rank=1, world_size=2)
    batches = [p.next_batch() for _ in range(200)]
    state = json.loads(json.dumps(batches[77].state_after))
    assert "video/add_modify@432x768" in state["streams"] and state["buckets"] == NAMES
    q = bucketed(rank=1, world_size=2)
    q.load_state_dict(state)
    resumed = [q.next_batch() for _ in range(122)]
    key = [(b.batch, b.kind, b.bucket, b.samples) for b in batches[78:]]
    assert [(b.batch, b.kind, b.bucket, b.samples) for b in resumed] == key
    with pytest.raises(ValueError, match="buckets"):
        bucketed(rank=1, world_size=2, names=NAMES[:2]).load_state_dict(state)
    with pytest.raises(ValueError, match="buckets"):  # a one-size state into a bucketed loader
        bucketed(rank=1, world_size=2).load_state_dict(planner(rank=1, world_size=2).state_dict())


def test_one_bucket_is_exactly_the_unbucketed_plan():
    a, b = planner(), bucketed(names=["480x720"])
    assert [a.next_batch().samples for _ in range(50)] == [b.next_batch().samples for _ in range(50)]
    assert a.state_dict() == b.state_dict()
