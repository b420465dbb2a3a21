"""Hostile or broken input: media confined to its folder, safe upload folders, real error lines, capped titles."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from data_helpers import ROOT, write_generic
from dff_core.data.importers import MAX_TITLE_CHARS, DataError, read_generic, read_microlens
from jobs.datasets import import_generic, import_uploads, upload_folder
from dff_core.data.media import resolve_media
from storage.datasets import list_datasets, load_items


def _items_with_media(folder, value: str, line_of_bad: int = 3):
    """A valid dataset whose item on file line ``line_of_bad`` has ``video_path = value``."""
    inter, items = write_generic(folder)
    rows = items.read_text().splitlines()
    item_id = rows[line_of_bad - 1].split(",")[0]
    rows[line_of_bad - 1] = f"{item_id},plain title,{value},,cat"
    items.write_text("\n".join(rows) + "\n")
    return inter, items


def _cli(db_path, *args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "dff_core", "--db", str(db_path), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("value, reason", [
    ("/etc/passwd", "absolute path"),
    ("../../etc/passwd", "outside the media folder"),
    ("videos/../../x.mp4", "outside the media folder"),
])
def test_media_path_escape_is_refused_with_file_and_line(db, tmp_path, value, reason):
    inter, items = _items_with_media(tmp_path / "d", value, line_of_bad=4)
    with pytest.raises(DataError) as err:
        import_generic(db, "evil", inter, items)
    assert str(err.value).startswith("items.csv line 4: video_path refused")
    assert reason in str(err.value)
    assert list_datasets(db) == []


def test_symlink_out_of_the_media_folder_is_refused(db, tmp_path):
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"secret")
    inter, items = _items_with_media(tmp_path / "d", "videos/link.mp4", line_of_bad=3)
    (tmp_path / "d" / "videos").mkdir()
    (tmp_path / "d" / "videos" / "link.mp4").symlink_to(outside)
    with pytest.raises(DataError, match=r"items.csv line 3: video_path refused .*symlink"):
        read_generic(inter, items)


def test_media_inside_the_folder_still_imports(db, tmp_path):
    inter, items = _items_with_media(tmp_path / "d", "videos/ok.mp4", line_of_bad=3)
    (tmp_path / "d" / "videos").mkdir()
    (tmp_path / "d" / "videos" / "ok.mp4").write_bytes(b"x")
    ds = import_generic(db, "ok", inter, items)
    stored = load_items(db, ds.id)["video_path"].dropna().tolist()
    assert stored == ["videos/ok.mp4"]


def test_media_escape_via_cli_is_one_line_exit_2(tmp_path):
    inter, items = _items_with_media(tmp_path / "d", "/etc/passwd", line_of_bad=5)
    res = _cli(tmp_path / "x.duckdb", "import-dataset", "evil", "--interactions", str(inter), "--items", str(items))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: items.csv line 5: video_path refused")
    assert "Traceback" not in res.stderr


def test_microlens_item_id_cannot_escape_the_folder(tmp_path):
    folder = tmp_path / "ml"
    (folder / "covers").mkdir(parents=True)
    (tmp_path / "x.jpg").write_bytes(b"outside")
    (folder / "pairs.tsv").write_text("u1\ta b ../../x\n")
    (folder / "titles.csv").write_text("item,title\na,A\nb,B\n../../x,evil\n")
    with pytest.raises(DataError, match=r"titles.csv line 4: cover_path refused"):
        read_microlens(folder)


def test_readers_never_leave_the_media_folder(tmp_path):
    """Defence in depth: a stored path that escapes (older database, edited by hand) reads as no media."""
    root = tmp_path / "media"
    root.mkdir()
    (root / "in.jpg").write_bytes(b"x")
    (root / "link.jpg").symlink_to("/etc/passwd")
    assert resolve_media(root, "in.jpg") == str((root / "in.jpg").resolve())
    assert resolve_media(root, "/etc/passwd") is None
    assert resolve_media(root, "../media/../../etc/passwd") is None
    assert resolve_media(root, "link.jpg") is None
    assert resolve_media(root, "missing.jpg") is None
    assert resolve_media(root, "missing.jpg", must_exist=False) == str(root.resolve() / "missing.jpg")


def test_explore_catalog_does_not_serve_escaping_paths(db, tmp_path):
    import sqlalchemy as sa

    from jobs.neighbours import load_catalog

    inter, items = write_generic(tmp_path / "d")
    ds = import_generic(db, "d", inter, items)
    with db.session() as conn:  # a database written before paths were confined
        conn.execute(sa.text("UPDATE items SET cover_path = '/etc/passwd' WHERE dataset_id = :d"), {"d": ds.id})
    catalog = load_catalog(db, "d")
    assert catalog.items["cover_path"].eq("/etc/passwd").all()
    assert [catalog.media(i) for i in range(len(catalog.items))] == [None] * len(catalog.items)


# ------------------------------------------------------------------------------------------------ uploads

def test_upload_folders_are_safe_and_unique(db):
    base = (db.path.parent / "uploads").resolve()
    folders = {name: upload_folder(db, name) for name in ("..", "a b", "a_b", "/etc", "x" * 300)}
    assert all(f.resolve().parent == base for f in folders.values())
    assert folders["a b"] != folders["a_b"]
    assert len(set(folders.values())) == len(folders)
    assert folders["a b"].name.startswith("a_b-")


def test_refused_upload_does_not_overwrite_the_first_datasets_files(db, tmp_path):
    inter, items = write_generic(tmp_path / "d")
    first = import_uploads(db, "mine", ("inter.csv", inter.read_bytes()), ("items.csv", items.read_bytes()))
    folder = upload_folder(db, "mine")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(ValueError, match="already exists"):
        import_uploads(db, "mine", ("inter.csv", b"user_id,item_id\nx,y\n"), ("items.csv", b"item_id,title\ny,t\n"))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [d.name for d in list_datasets(db)] == [first.name]


def test_failed_upload_leaves_no_files(db):
    with pytest.raises(DataError):
        import_uploads(db, "bad", ("i.csv", b"user_id,item_id\nu,nope\n"), ("items.csv", b"item_id,title\na,t\n"))
    assert not upload_folder(db, "bad").exists()


def test_upload_to_dotdot_is_refused_and_its_folder_would_stay_under_uploads(db, tmp_path):
    inter, items = write_generic(tmp_path / "d")
    with pytest.raises(ValueError, match="dataset name '..' refused: it is only dots"):
        import_uploads(db, "..", ("inter.csv", inter.read_bytes()), ("items.csv", items.read_bytes()))
    assert not (db.path.parent / "items.csv").exists() and not (db.path.parent / "uploads").exists()
    assert upload_folder(db, "..").parent == db.path.parent / "uploads"


# --------------------------------------------------------------------------------------------- locations

def test_malformed_csv_reported_at_the_file_line(tmp_path):
    inter, items = write_generic(tmp_path / "d")
    rows = items.read_text().splitlines()
    rows[6] = rows[6] + ",extra,fields"          # file line 7 (the header is line 1)
    items.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"^items.csv line 7: malformed CSV — expected 5 fields, found 7"):
        read_generic(inter, items)


def test_unclosed_quote_reported_where_it_starts(tmp_path):
    inter, items = write_generic(tmp_path / "d")
    rows = items.read_text().splitlines()
    rows[3] = 'i2,"never closed,,,cat0'             # file line 4
    items.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"^items.csv line 4: malformed CSV"):
        read_generic(inter, items)


def test_error_lines_count_blank_lines_and_quoted_newlines(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "items.csv").write_text('item_id,title\n\n"a","two\nlines"\nb,t\n\na,again\n')
    (d / "inter.csv").write_text("user_id,item_id\nu,a\n")
    with pytest.raises(DataError, match=r"item id 'a' appears more than once \(lines 3, 7\)"):
        read_generic(d / "inter.csv", d / "items.csv")


def test_non_utf8_microlens_pairs_named_with_file_and_line(tmp_path):
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "titles.csv").write_text("item,title\na,A\nb,B\n")
    (folder / "MicroLens_pairs.tsv").write_bytes(b"u1\ta b\nu2\ta b\nu3\ta \xff\xfeb\n")
    with pytest.raises(DataError, match=r"^MicroLens_pairs.tsv line 3: not UTF-8 text"):
        read_microlens(folder)


def test_non_utf8_csv_named_with_line(tmp_path):
    inter, items = write_generic(tmp_path / "d")
    items.write_bytes(items.read_bytes().replace(b"title 5,", b"title \xe9 5,"))
    with pytest.raises(DataError, match=r"^items.csv line 7: not UTF-8 text"):
        read_generic(inter, items)


# ---------------------------------------------------------------------------------------------- limits

def test_long_titles_are_capped_with_a_warning(db, tmp_path):
    inter, items = write_generic(tmp_path / "d")
    rows = items.read_text().splitlines()
    rows[2] = "i1," + "x" * 10_000_000 + ",,,cat1"     # a 10 MB "title" on line 3
    items.write_text("\n".join(rows) + "\n")
    ds = import_generic(db, "long", inter, items)
    titles = load_items(db, ds.id).set_index("item_id")["title"]
    assert len(titles["i1"]) == MAX_TITLE_CHARS == 2000
    assert any("1 title(s) longer than 2,000 characters were cut" in w and "line 3" in w for w in ds.warnings)
