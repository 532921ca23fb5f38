"""Any data set, listed in a table: `dataset.table` (relative to `dataset.root`, or absolute).

Columns: `path` (image file, relative to the root) and `birads` or `label`; optional `patient_id`,
`laterality` (L/R), `view`. Comma, semicolon or tab separated, UTF-8. Patient ids become
pseudonyms (`patient_id`, `image_id`); the manifest's `source` column keeps each path as the table
gives it, so keep names and record numbers out of file names. Without `patient_id` each image counts as its own patient,
so splits cannot keep a patient's images together: give patient ids where you have them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from mammosynth.datasets import pseudonym
from mammosynth.errors import UserError

log = logging.getLogger(__name__)
SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab"}


def read_table(path: Path) -> pd.DataFrame:
    try:
        with open(path, encoding="utf-8-sig") as f:
            header = next((line for line in f if line.strip()), "")
        # the header's commonest documented separator (a sniffer also picks letters, e.g. 'a')
        sep = max(SEPARATORS, key=header.count)
        # header=None: a line with more fields than the header is an error, not a shifted index
        table = pd.read_csv(path, sep=sep, header=None, dtype=str, keep_default_na=False,
                            encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8")
    except OSError as e:  # the config check saw it; it went away, or cannot be read by this user
        raise UserError(f"{path}: cannot read it ({e.strerror}); dataset.table must name a "
                        "readable file") from e
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the table is empty; it needs a header line (path, birads or "
                        "label, ...) and a line per image") from None
    except pd.errors.ParserError as e:
        raise UserError(f"{path}: cannot parse it as a {SEPARATORS[sep]}-separated table "
                        f"({' '.join(str(e).split())})") from e
    columns = [str(c).strip().lower() for c in table.iloc[0]]
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise UserError(f"{path}: column(s) {', '.join(twice)} appear more than once in the "
                        "header; keep one of each")
    table = table.iloc[1:].reset_index(drop=True)
    table.columns = columns
    return table.apply(lambda col: col.str.strip())


def read(root: Path, dataset: dict) -> list[dict]:
    path = Path(dataset["table"])  # the config check requires it for format csv
    path = path if path.is_absolute() else root / path
    table = read_table(path)
    if "path" not in table.columns or not {"birads", "label"} & set(table.columns):
        raise UserError(f"{path}: needs a 'path' column and a 'birads' or 'label' column "
                        f"(found: {', '.join(table.columns)}); the first line names the columns, "
                        "separated by commas, semicolons or tabs")
    if table.empty:
        raise UserError(f"{path}: the table has no inputs: a header line and no line per image")
    if "patient_id" not in table.columns:
        log.warning("%s has no patient_id column: each image is treated as its own patient", path)
    rows = []
    first_line: dict[str, int] = {}
    for line, rec in enumerate(table.to_dict("records"), start=2):
        image = root / rec["path"]
        again = first_line.setdefault(rec["path"], line) != line
        row = {"image_id": pseudonym(f"{rec['path']}#{line}" if again else rec["path"], "img"),
               "patient_id": pseudonym(rec.get("patient_id") or rec["path"], "pat"),
               "laterality": rec.get("laterality", "").upper()[:1],
               "view": rec.get("view", "").upper(), "birads": rec.get("birads", ""),
               "label": rec.get("label", ""), "source": rec["path"]}
        if not rec["path"]:
            row["reason"] = f"{path.name} line {line}: empty path"
        elif again:
            row["reason"] = (f"{path.name} line {line}: duplicate path {rec['path']} (first on "
                             f"line {first_line[rec['path']]}); list each image once")
        elif not image.is_file():
            row["reason"] = (f"{path.name} line {line}: no file {rec['path']} under the root"
                             + (" (broken symlink)" if image.is_symlink() else ""))
        rows.append(row)
    return rows
