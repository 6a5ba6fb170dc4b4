"""Property: a chat linked in one prefecture never reads another prefecture's data."""

from __future__ import annotations

import itertools
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db import repo
from db.models import Institution
from db.seed import ensure_prefecture
from handlers.context import Context
from handlers.dispatch import dispatch
from handlers.linking import issue_code
from handlers.messages import Inbound
from tests.conftest import NOW

PREFS = ["01", "13", "26", "47"]
_serial = itertools.count(1000000)

roster = st.lists(st.tuples(st.sampled_from(PREFS),
                            st.sampled_from(["未報告", "報告済", "確認済"])),
                  min_size=2, max_size=6)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=roster, pick=st.integers(min_value=0, max_value=5))
async def test_status_and_lookups_stay_inside_the_prefecture(
    ctx: Context, rows: list[tuple[str, str]], pick: int
) -> None:
    insts: list[Institution] = []
    async with ctx.session() as session:
        for pref in PREFS:
            await ensure_prefecture(session, pref, NOW.date(), "")
        for pref, status in rows:
            serial = next(_serial)
            inst = Institution(prefecture_code=pref, code=str(serial), name=f"医院{serial}",
                               kind="clinic", status=status,
                               confirmation="体制あり" if status == "確認済" else None)
            session.add(inst)
            insts.append(inst)
        await session.commit()
        target = insts[pick % len(insts)]
        code, _ = await issue_code(session, target, NOW, 30)
        await session.commit()
        for other in insts:
            for pref in PREFS:
                found = await repo.get_institution(session, pref, other.id or 0)
                assert (found is not None) == (pref == other.prefecture_code)
    user = uuid.uuid4().hex
    await dispatch(Inbound("demo", user, text=f"連携 {code}"), ctx)
    [reply] = await dispatch(Inbound("demo", user, text="報告状況"), ctx)
    assert target.name in reply.text
    for other in insts:
        if other.id != target.id:
            assert other.name not in reply.text
