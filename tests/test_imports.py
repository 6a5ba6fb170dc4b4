"""CSV imports: encodings, all-or-nothing, precise errors, idempotence, status history."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import select

from db.csvfile import FileProblem
from db.imports import import_report, import_roster, import_status
from db.models import Institution, StatusHistory
from handlers.context import Context
from tests.conftest import NOW

SAMPLES = Path(__file__).resolve().parent.parent / "docs" / "samples"
HEADER = "医療機関コード,名称,種別,特定機能病院,歯科,休院,市区町村,二次医療圏,メール,電話\n"
ROW = "2610001,さくら内科クリニック,診療所,無,無,無,京都市中京区,京都・乙訓,a@b.jp,075-000-0001\n"
STATUS_HEADER = "医療機関コード,報告状況,報告日,確認結果,差し戻し理由\n"


def csv_file(tmp_path: Path, text: str, encoding: str = "utf-8", name: str = "f.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


async def institutions(ctx: Context, pref: str = "26") -> dict[str, Institution]:
    async with ctx.session() as session:
        rows = await session.exec(select(Institution).where(Institution.prefecture_code == pref))
        return {i.code: i for i in rows}


@pytest.mark.parametrize(("encoding", "label"), [("utf-8", "UTF-8"), ("utf-8-sig", "BOM"),
                                                 ("cp932", "Shift_JIS")])
async def test_roster_in_every_excel_encoding(ctx: Context, tmp_path: Path, encoding: str,
                                              label: str) -> None:
    path = csv_file(tmp_path, HEADER + ROW, encoding)
    async with ctx.session() as session:
        result = await import_roster(session, path, "26")
    assert result.ok and label in result.encoding and result.created == 1
    inst = (await institutions(ctx))["2610001"]
    assert inst.name == "さくら内科クリニック" and inst.kind == "clinic"
    assert inst.municipality == "京都市中京区" and inst.status == "未報告"


async def test_bad_rows_write_nothing_and_every_error_is_named(ctx: Context,
                                                                tmp_path: Path) -> None:
    bad = (HEADER + ROW
           + "26100X2,みなみ病院,病院,無,無,無,宇治市,山城北,,\n"
           + "2610003,,医院,たぶん,無,無,宇治市,山城北,not-a-mail,\n"
           + ROW)
    before = await institutions(ctx)
    async with ctx.session() as session:
        result = await import_roster(session, csv_file(tmp_path, bad), "26")
    assert not result.ok
    found = {(e.line, e.column) for e in result.errors}
    assert {(3, "医療機関コード"), (4, "名称"), (4, "種別"), (4, "特定機能病院"), (4, "メール"),
            (5, "医療機関コード")} <= found
    dup = next(e for e in result.errors if e.line == 5)
    assert "2行目と重複" in dup.reason
    assert await institutions(ctx) == before  # nothing written, not even the good row


@pytest.mark.parametrize(("old", "new", "column", "reason"), [
    # 特定機能病院 is a hospital by definition; a clinic carrying the flag is a slip in the
    # roster, and importing it would take a clinic out of reporting.
    ("診療所,無,", "診療所,有,", "特定機能病院", "病院にだけ"),
    # 歯科 left blank must not make a dental clinic a reporting target unnoticed.
    ("診療所,無,無,無,", "診療所,無,,無,", "歯科", "空欄"),
])
async def test_a_row_that_would_change_who_must_report_is_refused_with_its_line(
        ctx: Context, tmp_path: Path, old: str, new: str, column: str, reason: str) -> None:
    async with ctx.session() as session:
        result = await import_roster(session, csv_file(tmp_path, HEADER + ROW.replace(old, new)),
                                     "26")
    assert not result.ok
    [error] = result.errors
    assert (error.line, error.column) == (2, column) and reason in error.reason
    assert "2610001" not in await institutions(ctx)


async def test_a_ten_digit_code_of_another_prefecture_is_refused(ctx: Context,
                                                                  tmp_path: Path) -> None:
    """The first two digits of a 10-digit 医療機関コード are its prefecture: a roster
    imported under the wrong --prefecture stops at its first row."""
    tokyo = ROW.replace("2610001,", "1311234567,")
    kyoto = ROW.replace("2610001,", "2611234567,").replace("a@b.jp", "c@d.jp")
    async with ctx.session() as session:
        wrong = await import_roster(session, csv_file(tmp_path, HEADER + tokyo), "26")
        right = await import_roster(session, csv_file(tmp_path, HEADER + kyoto, name="k.csv"),
                                    "26")
    [error] = wrong.errors
    assert (error.line, error.column) == (2, "医療機関コード") and "--prefecture" in error.reason
    stored = await institutions(ctx)
    assert right.ok and "2611234567" in stored and "1311234567" not in stored


async def test_reasons_are_kept_as_typed_and_names_stay_searchable(
        ctx: Context, tmp_path: Path) -> None:
    """A 差し戻し reason is shown to the clinic as written (（ハ）, ①); a name is NFKC'd,
    so staff find ｻｸﾗ内科 by typing サクラ内科, and full-width digits in codes work."""
    row = ROW.replace("2610001,さくら内科クリニック", "２６１０００９,ｻｸﾗ内科ｸﾘﾆｯｸ")
    status = ("医療機関コード,報告状況,報告日,確認結果,差し戻し理由\n"
              "2610009,差し戻し,2027-01-20,,①2号機能（ハ）の件数が未入力です\n")
    async with ctx.session() as session:
        assert (await import_roster(session, csv_file(tmp_path, HEADER + row), "26")).ok
        assert (await import_status(session, csv_file(tmp_path, status, name="s.csv"), "26",
                                    NOW)).ok
    inst = (await institutions(ctx))["2610009"]
    assert inst.name == "サクラ内科クリニック"
    assert inst.return_reason == "①2号機能（ハ）の件数が未入力です"
    # A reason typed on two lines (Alt+Enter in Excel, so quoted) is a message, not a runaway
    # quote, when the row has every cell.
    two_lines = ("医療機関コード,報告状況,報告日,確認結果,差し戻し理由\n"
                 "2610009,差し戻し,2027-01-20,,\"①件数が未入力です\n②連携先が空欄です\"\n")
    async with ctx.session() as session:
        assert (await import_status(session, csv_file(tmp_path, two_lines, name="t.csv"), "26",
                                    NOW)).ok
    assert (await institutions(ctx))["2610009"].return_reason == (
        "①件数が未入力です\n②連携先が空欄です")


async def test_missing_column_and_unreadable_file_are_file_problems(ctx: Context,
                                                                    tmp_path: Path) -> None:
    async with ctx.session() as session:
        with pytest.raises(FileProblem, match="種別"):
            await import_roster(session, csv_file(tmp_path, HEADER.replace("種別,", "") + ROW),
                                "26")
        # Every missing column at once, with what the first line has instead.
        wrong = HEADER.replace("医療機関コード", "コード").replace("種別,", "")
        with pytest.raises(FileProblem) as problem:
            await import_roster(session, csv_file(tmp_path, wrong + ROW, name="w.csv"), "26")
        assert "「医療機関コード」・「種別」がありません" in str(problem.value)
        assert "見出し：「コード」、「名称」" in str(problem.value)
        with pytest.raises(FileProblem, match="文字コード"):
            path = tmp_path / "bin.csv"
            path.write_bytes(b"\x81\xff\xfe\x00" * 10)
            await import_roster(session, path, "26")


async def test_reimport_changes_nothing_and_status_changes_are_recorded(ctx: Context) -> None:
    async with ctx.session() as session:
        first = await import_roster(session, SAMPLES / "roster.csv", "26")
        again = await import_roster(session, SAMPLES / "roster.csv", "26")
        s1 = await import_status(session, SAMPLES / "status.csv", "26", NOW)
        s2 = await import_status(session, SAMPLES / "status.csv", "26", NOW)
        r1 = await import_report(session, SAMPLES / "report.csv", "26")
        r2 = await import_report(session, SAMPLES / "report.csv", "26")
    assert (first.created, again.created, again.updated, again.unchanged) == (5, 0, 0, 5)
    assert (s1.updated, s2.updated, s2.unchanged) == (2, 0, 2)
    assert (r1.updated, r2.updated) == (2, 0)
    insts = await institutions(ctx)
    assert (insts["2610001"].status == "差し戻し"
            and "訪問診療" in (insts["2610001"].return_reason or ""))
    assert insts["2610002"].confirmation == "体制あり"
    assert insts["2610001"].report and insts["2610001"].report["posting"] is True
    async with ctx.session() as session:
        history = (await session.exec(select(StatusHistory))).all()
    assert sorted((h.old_status, h.new_status, h.source_file) for h in history) == [
        ("未報告", "差し戻し", "status.csv"), ("未報告", "確認済", "status.csv")]


async def test_status_rows_must_be_on_this_prefectures_roster(ctx: Context,
                                                             tmp_path: Path) -> None:
    async with ctx.session() as session:
        await import_roster(session, SAMPLES / "roster.csv", "26")
        text = ("医療機関コード,報告状況,報告日,確認結果,差し戻し理由\n"
                "2610001,確認済,2027-01-10,,\n"
                "9999999,報告済,2027/1/5,,\n"
                "2610002,報告済,2027-13-01,,\n"
                "2610003,差し戻し,,,\n")
        result = await import_status(session, csv_file(tmp_path, text), "13", NOW)
        other = await import_status(session, csv_file(tmp_path, text), "26", NOW)
    foreign = {e.value for e in result.errors if "名簿にない" in e.reason}
    assert {"2610001", "9999999"} <= foreign  # prefecture 13 cannot touch 26's institutions
    reasons = {(e.line, e.column): e.reason for e in other.errors}
    assert "体制あり" in reasons[(2, "確認結果")]
    assert "名簿にない" in reasons[(3, "医療機関コード")]
    assert "日付" in reasons[(4, "報告日")] and "理由が必要" in reasons[(5, "差し戻し理由")]
    assert (await institutions(ctx))["2610001"].status == "未報告"


@pytest.mark.parametrize(("after", "end"), [
    ("2610031,みなみ病院,病院,無,無,無,宇治市,山城北,,\n", 4),  # swallowed to the end of the file
    ("2610031,\"みなみ病院\",病院,無,無,無,宇治市,山城北,,\n", 3),  # or up to the next quote
])
async def test_an_unclosed_quote_is_named_where_its_row_starts(ctx: Context, tmp_path: Path,
                                                               after: str, end: int) -> None:
    """An open quote swallows the lines after it into one cell: the operator is told which
    quote, not that line 3's 種別 and 特定機能病院 are empty."""
    bad = HEADER + "2610030,\"閉じない引用,診療所,無,無,無,宇治市,山城北,,\n" + after + ROW
    before = await institutions(ctx)
    async with ctx.session() as session:
        result = await import_roster(session, csv_file(tmp_path, bad), "26")
    [error] = result.errors
    assert (error.line, error.column, error.value) == (2, "名称", "閉じない引用,診療所,無,無,無,"
                                                                   "宇治市,山城北,,")
    assert str(error).startswith("2行目 「名称」 ")
    assert error.reason.startswith(f"引用符（\"）が閉じられていません（{end}行目までが")
    assert await institutions(ctx) == before


@pytest.mark.parametrize(("header", "named"), [
    (HEADER.replace("\n", ",医療機関コード\n"),
     "「医療機関コード」の列が2つあります（1列目、11列目）"),
    (HEADER.replace("\n", ",医療機関名\n"),  # a column and its alias are one field too
     "「名称」の列が2つあります（2列目「名称」、11列目「医療機関名」）"),
])
async def test_a_column_given_twice_is_refused_by_name(ctx: Context, tmp_path: Path,
                                                       header: str, named: str) -> None:
    """Two columns for one field: taking either silently may import the wrong values."""
    before = await institutions(ctx)
    async with ctx.session() as session:
        with pytest.raises(FileProblem) as problem:
            await import_roster(session, csv_file(tmp_path, header + ROW.replace("\n", ",X\n")),
                                "26")
    assert named in str(problem.value)
    assert await institutions(ctx) == before


async def test_a_row_with_too_few_or_too_many_cells_is_named(ctx: Context,
                                                             tmp_path: Path) -> None:
    """A missing or extra cell shifts the values after it into the wrong columns, even
    when every shifted value parses (an unquoted 京都市,下京区 makes 下京区 the 二次医療圏)."""
    header = "医療機関コード,名称,種別,特定機能病院,歯科,休院,市区町村,二次医療圏\n"
    good = "2610001,さくら内科クリニック,診療所,無,無,無,京都市中京区,京都・乙訓\n"
    short = "2610002,みなみ病院,病院,無\n"
    long = "2610003,四条クリニック,診療所,無,無,無,京都市,下京区,京都・乙訓\n"
    before = await institutions(ctx)
    async with ctx.session() as session:
        result = await import_roster(session, csv_file(tmp_path, header + good + short + long),
                                     "26")
    assert [(e.line, e.column, e.value) for e in result.errors] == [
        (3, "歯科", ""), (4, "9列目", "京都・乙訓")]
    assert result.errors[0].reason.startswith("この行は4列あります（1行目の見出しは8列です）")
    assert result.errors[1].reason.startswith("この行は9列あります（1行目の見出しは8列です）")
    assert result.rows == 3 and await institutions(ctx) == before


async def test_every_status_row_error_is_reported_in_one_run(ctx: Context,
                                                             tmp_path: Path) -> None:
    """A bad cell does not hide the row's other errors: a duplicate code, a missing 確認結果
    and, under another --prefecture, 名簿にない come back in the same run."""
    text = (STATUS_HEADER
            + "2610001,確認済,2027-02-30,,\n"  # 2: no such date, 確認結果 missing
            + "2610002,たぶん,,,\n"  # 3: bad 報告状況
            + "2610003,報告済,2027-01-10,,\n"  # 4: good
            + "2610004,報告済,2027-01-32,体制あり,\n"  # 5: bad 報告日
            + "2610005,報告済,,,\n"  # 6: good
            + "2610004,差し戻し,2027年1月,,\n")  # 7: 5's code again, bad 報告日, no reason
    async with ctx.session() as session:
        await import_roster(session, SAMPLES / "roster.csv", "26")
    before = await institutions(ctx)
    async with ctx.session() as session:
        here = await import_status(session, csv_file(tmp_path, text), "26", NOW)
        other = await import_status(session, csv_file(tmp_path, text), "13", NOW)
    assert [(e.line, e.column) for e in here.errors] == [
        (2, "報告日"), (2, "確認結果"), (3, "報告状況"), (5, "報告日"),
        (7, "報告日"), (7, "差し戻し理由"), (7, "医療機関コード")]
    assert here.errors[-1].reason == "5行目と重複しています"
    foreign = [e.line for e in other.errors if "名簿にない" in e.reason]
    assert foreign == [2, 3, 4, 5, 6, 7]  # every row carrying a code, not only the clean ones
    assert await institutions(ctx) == before
    async with ctx.session() as session:
        assert (await session.exec(select(StatusHistory))).all() == []


async def test_every_report_row_error_is_reported_in_one_run(ctx: Context,
                                                             tmp_path: Path) -> None:
    header = "医療機関コード,院内掲示,一次診療,患者相談,2号イ,2号ロ,2号ハ,2号ニ\n"
    text = (header
            + "9999999,たぶん,有,有,有,有,有,有\n"  # 2: bad flag and not on the roster
            + "2610001,有,有,有,有,有,有,有\n"  # 3: good
            + "2610001,有,有,有,有,有,有,多分\n")  # 4: bad flag and 3's code again
    async with ctx.session() as session:
        await import_roster(session, SAMPLES / "roster.csv", "26")
    before = await institutions(ctx)
    async with ctx.session() as session:
        result = await import_report(session, csv_file(tmp_path, text), "26")
    assert [(e.line, e.column, e.value) for e in result.errors] == [
        (2, "院内掲示", "たぶん"), (2, "医療機関コード", "9999999"), (4, "2号ニ", "多分"),
        (4, "医療機関コード", "2610001")]
    assert "名簿にない" in result.errors[1].reason and "3行目と重複" in result.errors[3].reason
    assert await institutions(ctx) == before


@pytest.mark.parametrize(("value", "reason"), [
    ("2027-02-30", "2027年2月30日は存在しない日付です"),
    ("2027/13/1", "2027年13月1日は存在しない日付です"),
    ("2027年2月", "日付は 2026-01-31 または 2026/1/31 の形で入力してください"),
    ("R9.2.1", "日付は 2026-01-31 または 2026/1/31 の形で入力してください"),
])
async def test_a_date_that_does_not_exist_is_not_told_to_change_its_form(
        ctx: Context, tmp_path: Path, value: str, reason: str) -> None:
    text = STATUS_HEADER + f"2610001,報告済,{value},,\n"
    async with ctx.session() as session:
        await import_roster(session, SAMPLES / "roster.csv", "26")
        result = await import_status(session, csv_file(tmp_path, text), "26", NOW)
    [error] = result.errors
    assert (error.line, error.column, error.value, error.reason) == (2, "報告日", value, reason)
    assert (await institutions(ctx))["2610001"].status == "未報告"


@pytest.mark.parametrize(("header", "name"), [(HEADER, "roster.csv"),
                                              (STATUS_HEADER, "status.csv")])
async def test_a_file_with_only_its_header_row_is_a_file_problem(
        ctx: Context, tmp_path: Path, header: str, name: str) -> None:
    """0件 read as success, and an empty status file would have stamped every clinic's
    status as current: the file is refused by name and nothing changes."""
    before = await institutions(ctx)
    path = csv_file(tmp_path, header + "\n,,,,\n" if name == "status.csv" else header,
                    name=name)
    async with ctx.session() as session:
        with pytest.raises(FileProblem) as problem:
            if name == "roster.csv":
                await import_roster(session, path, "26")
            else:
                await import_status(session, path, "26", NOW)
    assert str(problem.value) == (f"{path}: データの行がありません（見出しの1行目だけです）。"
                                  "2行目から1医療機関1行で入れてください")
    assert await institutions(ctx) == before


CUT_ROSTER = (SAMPLES / "roster.csv").read_text(encoding="utf-8").splitlines(keepends=True)


@pytest.mark.parametrize(("last", "column", "value"), [
    # cut inside the last, quoted value: csv reads it as closed and the row has every cell
    ('2610005,やまなか診療所,診療所,無,無,有,福知山市,中丹,,"0773-00-00', "電話", "0773-00-00"),
    ('2610005,"やまなか診療所,診療所', "名称", "やまなか診療所,診療所"),
    # cut without a quote: fewer cells, and no line break at the end of the file
    ("2610005,やまなか診療所,診療所,無", "歯科", ""),
])
async def test_a_file_cut_in_its_last_row_imports_nothing(
        ctx: Context, tmp_path: Path, last: str, column: str, value: str) -> None:
    """A download that stopped half-way had updated its last institution with a cut value."""
    async with ctx.session() as session:
        await import_roster(session, SAMPLES / "roster.csv", "26")
        before = await institutions(ctx)
        result = await import_roster(session, csv_file(tmp_path, "".join(CUT_ROSTER[:-1]) + last),
                                     "26")
    [error] = result.errors
    assert (error.line, error.column, error.value) == (6, column, value)
    assert "ファイルが終わっています" in error.reason and "途中で止まった" in error.reason
    assert await institutions(ctx) == before


async def test_a_status_file_cut_inside_a_reason_imports_nothing(ctx: Context,
                                                                tmp_path: Path) -> None:
    """A 差し戻し理由 may hold line breaks, so a reason cut after one had looked whole."""
    text = (STATUS_HEADER + "2610001,報告済,2027-01-10,,\n"
            + '2610002,差し戻し,,,"院内掲示の写真が\n')
    async with ctx.session() as session:
        await import_roster(session, SAMPLES / "roster.csv", "26")
        result = await import_status(session, csv_file(tmp_path, text), "26", NOW)
    [error] = result.errors
    assert (error.line, error.column, error.value) == (3, "差し戻し理由", "院内掲示の写真が")
    stored = await institutions(ctx)
    assert stored["2610001"].status == stored["2610002"].status == "未報告"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp932"])
async def test_a_file_cut_inside_a_character_is_named_as_cut(
        ctx: Context, tmp_path: Path, encoding: str) -> None:
    """Not 「文字コードを判別できません」: the encoding is right, the end is missing."""
    data = (HEADER + ROW + ROW.replace("2610001", "2610002")).encode(encoding)
    path = tmp_path / "cut.csv"
    cut = data.rindex("訓".encode(encoding.removesuffix("-sig"))) + 1  # 訓's first byte only
    path.write_bytes(data[:cut])
    async with ctx.session() as session:
        with pytest.raises(FileProblem) as problem:
            await import_roster(session, path, "26")
    assert f"{path}:3行目: ファイルの最後で文字が途中で切れています" in str(problem.value)


async def test_another_prefectures_code_in_a_status_or_report_file_is_named_as_such(
        ctx: Context, tmp_path: Path) -> None:
    """Not only the roster: a status or report file exported for the wrong prefecture is
    named by its codes' prefecture number, not as institutions missing from the roster."""
    status = STATUS_HEADER + "1311234567,報告済,2027-01-10,,\n2610001,報告済,2027-01-10,,\n"
    report = ("医療機関コード,院内掲示,一次診療,患者相談,2号イ,2号ロ,2号ハ,2号ニ\n"
              "1311234567,有,有,有,,,,\n")
    async with ctx.session() as session:
        await import_roster(session, SAMPLES / "roster.csv", "26")
        results = [await import_status(session, csv_file(tmp_path, status), "26", NOW),
                   await import_report(session, csv_file(tmp_path, report, name="r.csv"), "26")]
    for result in results:
        [error] = result.errors
        assert (error.line, error.column, error.value) == (2, "医療機関コード", "1311234567")
        assert "都道府県番号 13" in error.reason and "--prefecture" in error.reason
    assert (await institutions(ctx))["2610001"].status == "未報告"


async def test_seven_digit_codes_are_counted_as_taken_for_the_prefecture(
        ctx: Context, tmp_path: Path) -> None:
    """A 7-digit code has no prefecture number: it is the --prefecture's, and the summary
    says how many were taken so (10-digit ones are checked instead)."""
    kyoto = ROW.replace("2610001,", "2611234567,")
    async with ctx.session() as session:
        mixed = await import_roster(session, csv_file(tmp_path, HEADER + ROW + kyoto), "26")
    assert mixed.ok and mixed.created == 2 and mixed.short_codes == 1
