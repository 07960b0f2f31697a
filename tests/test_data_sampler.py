"""The batch plan: ratios, kind-pure batches, disjoint shards across ranks, determinism and resume."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from data_loaders.sampler import BatchPlanner

VIDEO = list(range(0, 40))
IMAGE = list(range(40, 440))


def planner(rank: int = 0, world_size: int = 1, seed: int = 0, **kw) -> BatchPlanner:
    pools = {"video/add_modify": VIDEO, "video/delete": VIDEO, "image/add_modify": IMAGE, "image/delete": IMAGE}
    args = dict(image_video_ratio=10.0, delete_ratio=0.25, video_batch_size=2, image_batch_size=8)
    args.update(kw)
    return BatchPlanner(pools, seed=seed, rank=rank, world_size=world_size, **args)


def test_ratios_over_many_draws_and_kind_pure_batches():
    p = planner()
    kinds, tasks = Counter(), Counter()
    for _ in range(6000):
        b = p.next_batch()
        kinds[b.kind] += 1
        assert len(b.samples) == (2 if b.kind == "video" else 8)  # batch size per kind
        assert {s.stream.split("/")[0] for s in b.samples} == {b.kind}  # kind-pure
        pool = VIDEO if b.kind == "video" else IMAGE
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


@pytest.mark.parametrize("world_size", [2, 4])
def test_ranks_see_disjoint_samples_and_stay_in_step(world_size):
    per_rank = {}
    for rank in range(world_size):
        p = planner(rank, world_size)
        batches = [p.next_batch() for _ in range(60)]
        per_rank[rank] = batches
    # the same kind at the same step on every rank
    for step in range(60):
        assert len({per_rank[r][step].kind for r in range(world_size)}) == 1
    # within the first epoch of each stream, what the ranks draw is disjoint
    for stream, pool in (("image/add_modify", IMAGE), ("video/add_modify", VIDEO)):
        share = len(pool) // world_size
        seen = []
        for rank in range(world_size):
            recs = [s.record for b in per_rank[rank] for s in b.samples if s.stream == stream][:share]
            assert len(recs) == len(set(recs))
            seen.append(set(recs))
        for a in range(world_size):
            for b in range(a + 1, world_size):
                assert not seen[a] & seen[b]
    # a whole epoch of the rank shares covers the pool exactly once
    shares = [set(planner(r, world_size).rank_share("image/add_modify", 0)) for r in range(world_size)]
    assert set().union(*shares) == set(IMAGE) and sum(len(s) for s in shares) == len(IMAGE)


def test_epochs_cover_the_pool_and_are_reshuffled():
    p = planner(image_video_ratio=0, delete_ratio=0.0, video_batch_size=1)
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
