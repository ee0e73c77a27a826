"""Hostile text cannot run in the report, nor as a formula in a spreadsheet (issue 14, defect 8).

The report test builds a page from a small synthetic run folder (``ranking.csv``,
``failures.csv``, the split manifest, a model folder with a crafted ``card.json``): no
docking, no engines, a few seconds. The page is opened in headless Chromium, which would
run any script that got through: the test asserts that none did (title unchanged, no
dialog, no injected element, no policy violation) and that the hostile text is shown as
text.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from chromium import HeadlessPage

from pipeline.config import validate_config
from pipeline.io import FORMULA_TRIGGERS, neutralize_csv_cells, restore_csv_cells, sd_text
from pipeline.ranking import write_table_csv

#: Markup that runs script wherever it is inserted unescaped (in text, in an attribute, in
#: a <script> block), each one leaving a trace the test looks for.
IMG = "<img id=injected-img src=x onerror=\"document.title='pwned-img'\">"
SCRIPT = "</script><script>document.title='pwned-script';alert(1)</script>"
ATTR = '" autofocus onfocus="document.title=\'pwned-attr\'" x="'
SVG = "<svg id=injected-svg onload=\"document.title='pwned-svg'\"></svg>"
HOSTILE = [IMG, SCRIPT, ATTR, SVG]
TITLE = "vscreen screening report: hostile"


def _card(models: Path) -> Path:
    """A model folder whose card carries markup in every field the report shows."""
    folder = models / "shared"
    folder.mkdir(parents=True)
    card = {"task": IMG, "n_models": SCRIPT, "score": {"meaning": ATTR + SVG}, "name": SCRIPT}
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def _fake_run(tmp_path: Path) -> tuple[Path, dict]:
    """A ranked run folder without any stage output but the tables the report reads."""
    run = tmp_path / "results" / "hostile"
    (run / "chunks").mkdir(parents=True)
    (run / "chunks" / "manifest.json").write_text(json.dumps({"rows": 5, "accepted": 4, "failed": 1, "chunks": []}))
    ids = ["c1", "c2", "c3", "c4"]
    ranking = pd.DataFrame(
        {
            "rank": [1, 2, 3, 4],
            "id": ids,
            "input_id": [IMG, SCRIPT, '=HYPERLINK("http://x","y")', ATTR],
            "smiles": ["CCO", "c1ccccc1O", "CCN", "CC(=O)O"],
            "prepared_smiles": ["CCO", "c1ccccc1O", "CC[NH3+]", "CC(=O)[O-]"],
            "docking_score": [-7.5, -6.25, -5.0, -4.5],
            "n_poses": [2, 1, 3, 1],
            "gnn_score": [0.9, 0.7, 0.5, 0.3],
            "gnn_spread": [0.01, 0.02, 0.03, 0.04],
            "interactions": [f"{SVG}:HBDonor; TYR253.A:Hydrophobic", "", IMG, "MET318.A:HBAcceptor"],
        }
    )
    write_table_csv(ranking, run / "ranking.csv")
    failures = pd.DataFrame({"id": ["c5"], "stage": ["prepare"], "reason": [f"invalid SMILES {SCRIPT!r}"]})
    write_table_csv(failures, run / "failures.csv")
    write_table_csv(pd.DataFrame(columns=["id", "stage", "reason"]), run / "pose_warnings.csv")
    model = _card(tmp_path / "models")
    config = validate_config(
        {
            "run": "hostile",
            "library": {"path": str(tmp_path / "gone" / f"{IMG}.smi")},
            "receptor": {"path": str(tmp_path / f"{SCRIPT}.pdb")},
            "box": {"center": [0, 0, 0], "size": [10, 10, 10]},
            "refine": {"enabled": False},
            "score": {"enabled": True, "model": str(model)},
            "report": {"top_n": 4},
        }
    )
    return run, config


def test_crafted_card_and_ids_cannot_inject_markup(tmp_path, chromium):
    """Acceptance (issue 14, criterion 3): a crafted card.json and input ids run no script and
    add no element; the text appears escaped, as text."""
    from pipeline.report import build_report

    run, config = _fake_run(tmp_path)
    build_report(run, config)
    page_html = (run / "report.html").read_text()
    for hostile in HOSTILE:
        assert hostile not in page_html
    assert "script-src 'unsafe-inline'" not in page_html and "script-src 'sha256-" in page_html

    with HeadlessPage(chromium) as page:
        page.load((run / "report.html").as_uri())
        assert page.dialogs == []
        assert page.evaluate("document.title") == TITLE
        assert (
            page.evaluate(
                "document.querySelectorAll('#injected-img, #injected-svg, [onerror], [onload], [onfocus]').length"
            )
            == 0
        )
        assert page.evaluate("document.scripts.length") == 1
        # a blocked script would be a policy violation, reported as a console error
        assert page.console_errors == []
        shown = page.evaluate("document.body.innerText")
        for hostile in HOSTILE:
            assert hostile in shown  # the hostile text is on the page, as text
        assert page.evaluate("document.querySelector('#settings').innerText").count(SCRIPT) >= 1  # card n_models
        # the page still works: sorting by docking score reverses nothing but the order
        headers = page.evaluate("[...document.querySelectorAll('#top-hits th')].map(h => h.textContent)")
        column = headers.index("docking score (kcal/mol)")
        page.evaluate(f"document.querySelectorAll('#top-hits th')[{column}].click()")
        page.evaluate(f"document.querySelectorAll('#top-hits th')[{column}].click()")
        shown = page.evaluate(
            f"[...document.querySelectorAll('#top-hits tbody tr')]"
            f".map(r => parseFloat(r.cells[{column}].dataset.value))"
        )
        assert shown == [-4.5, -5.0, -6.25, -7.5]
        assert page.evaluate("document.title") == TITLE and page.console_errors == [] and page.dialogs == []


def test_policy_blocks_script_that_escaping_missed(tmp_path, chromium):
    """The second line of defence on its own: markup put into a page unescaped does not run,
    because the policy allows only the page's own script (by hash)."""
    from pipeline.report import html

    raw = html.page(
        "t", "s", [("a", "A", IMG + SCRIPT + "<p><button id=b onclick=\"document.title='pwned-click'\">b</button></p>")]
    )
    path = tmp_path / "raw.html"
    path.write_text(raw)
    with HeadlessPage(chromium) as page:
        page.load(path.as_uri())
        page.evaluate("document.getElementById('b').click()")
        assert page.evaluate("document.title") == "t" and page.dialogs == []
        assert any("Content Security Policy" in e for e in page.console_errors), page.console_errors


# ---------------------------------------------------------------------------------------------- CSV cells


# no lone carriage return: pandas' CSV writer leaves a cell with one unquoted (the library
# readers turn every line break into \n, so ids never hold one); neutralizing it is tested below
FORMULAS = ['=HYPERLINK("http://x","y")', "+1", "-x", "@sum(A1)", "\tx", "'quoted", "''two", "=1+1\n2", "α=β"]


def test_written_csv_has_no_formula_cell_and_reads_back_exactly(tmp_path):
    """Acceptance: no cell of a table written by write_table_csv starts with a formula character;
    stripping one leading quote gives the exact value back; numbers are untouched."""
    table = pd.DataFrame(
        {
            "id": [f"c{i}" for i in range(len(FORMULAS))],
            "input_id": FORMULAS,
            "docking_score": [-1.5] * len(FORMULAS),
            "reason": ["-"] * len(FORMULAS),
        }
    )
    write_table_csv(table, tmp_path / "t.csv")
    back = pd.read_csv(tmp_path / "t.csv", dtype=str, keep_default_na=False)
    for column in ("id", "input_id", "reason"):
        assert not back[column].str.startswith(FORMULA_TRIGGERS[:-1]).any(), back[column].tolist()
    assert [v[1:] if v.startswith("'") else v for v in back["input_id"]] == FORMULAS
    assert back["input_id"].iloc[-1] == "α=β"  # only a first character counts
    assert set(back["docking_score"]) == {"-1.5000"}  # a number is no formula
    restored = restore_csv_cells(back)
    assert restored["input_id"].tolist() == FORMULAS and restored["id"].tolist() == table["id"].tolist()


def test_neutralize_leaves_numbers_and_plain_text_alone():
    table = pd.DataFrame(
        {
            "n": [-1, 2],
            "x": [-1.5, None],
            "mixed": [-3, "-3"],
            "t": ["CCO", None],
            "cr": ["\rx", "x\r"],
            "flags": pd.Series([True, False], dtype=object),
        }
    )
    out = neutralize_csv_cells(table)
    assert out["n"].tolist() == [-1, 2] and out["x"].tolist()[0] == -1.5
    assert out["mixed"].tolist() == [-3, "'-3"] and out["t"][0] == "CCO" and pd.isna(out["t"][1])
    assert out["cr"].tolist() == ["'\rx", "x\r"] and out["flags"].tolist() == [True, False]
    assert table["mixed"].tolist() == [-3, "-3"]  # the input is not changed
    assert restore_csv_cells(out).equals(table)


def test_sd_values_are_single_lines(tmp_path):
    from rdkit import Chem

    mol = Chem.MolFromSmiles("CCO")
    values = ["a\nb", "a\r\n\r\nb", "$$$$", "x\n$$$$\n> <p>", ""]
    for number, value in enumerate(values):
        mol.SetProp(f"p{number}", sd_text(value))
    mol.SetProp("after", "kept")
    path = tmp_path / "m.sdf"
    writer = Chem.SDWriter(str(path))
    writer.write(mol)
    writer.write(mol)
    writer.close()
    back = [m for m in Chem.SDMolSupplier(str(path))]
    assert len(back) == 2 and all(m is not None for m in back)
    props = back[0].GetPropsAsDict()
    assert props["after"] == "kept"
    assert [props[f"p{n}"] for n in range(len(values))] == ["a b", "a  b", " $$$$", "x $$$$ > <p>", ""]

    from pipeline.report.top_hits import _format  # how top_hits.sdf writes every ranking column

    assert _format("multi\nline", False) == "multi line" and _format(-7.25, False) == "-7.2500"
