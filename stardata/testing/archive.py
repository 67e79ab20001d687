"""What the emulated Gaia archive answers: an ADQL subset over tables, and DataLink products.

:func:`execute_adql` runs ``SELECT [TOP n] a.col [AS name], ... FROM t AS a [JOIN t2 AS b ON
b.x = a.y]...`` on polars tables; :func:`votable_bytes` writes the result as the archive does
(BINARY2 VOTable); :func:`xp_files` packs XP_CONTINUOUS rows into a DataLink zip in any of the
archive's formats; :func:`parse_form` and :func:`upload_tables` read a TAP request's fields and
uploaded tables.
"""

from __future__ import annotations

import io
import re
import urllib.parse
import zipfile

import numpy as np
import polars as pl

__all__ = [
    "TAP_ERROR",
    "DataLinkRejected",
    "XP_EXT",
    "XP_PRODUCT_COLUMNS",
    "execute_adql",
    "parse_form",
    "upload_tables",
    "votable_bytes",
    "xp_files",
]

XP_PRODUCT_COLUMNS = (
    "source_id",
    "solution_id",
    "bp_n_parameters",
    "bp_standard_deviation",
    "bp_coefficients",
    "bp_coefficient_errors",
    "bp_coefficient_correlations",
    "bp_n_relevant_bases",
    "rp_n_parameters",
    "rp_standard_deviation",
    "rp_coefficients",
    "rp_coefficient_errors",
    "rp_coefficient_correlations",
    "rp_n_relevant_bases",
)
XP_EXT = {"csv": "csv", "ecsv": "ecsv", "fits": "fits", "votable": "xml", "votable_plain": "xml"}
TAP_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<VOTABLE version="1.4" '
    'xmlns="http://www.ivoa.net/xml/VOTable/v1.3">\n <RESOURCE type="results">\n'
    '  <INFO name="QUERY_STATUS" value="ERROR">{message}</INFO>\n </RESOURCE>\n</VOTABLE>\n'
)


class DataLinkRejected(ValueError):
    """A DataLink parameter the archive refuses with HTTP 500 and its own message."""

    def page(self, url: str) -> str:
        """The body the Gaia data server sends (recorded in ``tests/data``)."""
        return (
            f"Error 500:\n{self}\n\nCannot process request: '{url}' (req: Reqid: anonymous1, "
            "retrieval access: DIRECT, retrieval type: XP_CONTINUOUS, compression: null), "
            f"for user: UwsJobOwner{{id='anonymous'}},  due to: {self}"
        )


def xp_files(rows: pl.DataFrame | None, fmt: str, *, combined: bool = False) -> bytes:
    """A DataLink zip holding ``rows`` as XP_CONTINUOUS product files in format ``fmt``."""
    buffer = io.BytesIO()
    ext = XP_EXT[fmt]
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        if rows is not None and rows.height:
            cols = [c for c in XP_PRODUCT_COLUMNS if c in rows.columns]
            rows = rows.select(cols)
            if combined:
                bundle.writestr(f"XP_CONTINUOUS_COMBINED.{ext}", _xp_file(rows, fmt))
            else:
                for k in range(rows.height):
                    sid = rows["source_id"][k]
                    name = f"XP_CONTINUOUS-Gaia DR3 {sid}.{ext}"
                    bundle.writestr(name, _xp_file(rows.slice(k, 1), fmt))
    return buffer.getvalue()


def _xp_file(rows: pl.DataFrame, fmt: str) -> bytes:
    if fmt == "csv":
        return _xp_csv(rows)
    table = _astropy_table(rows, masked_cells=fmt != "fits")
    out = io.BytesIO()
    if fmt == "ecsv":
        text = io.StringIO()
        table.write(text, format="ascii.ecsv", delimiter=",")
        return text.getvalue().encode()
    if fmt == "fits":
        table.write(out, format="fits")
    else:  # BINARY2 as the archive does (astropy 8.0.2's C TABLEDATA writer corrupted memory
        # when run in the server thread)
        table.write(out, format="votable", tabledata_format="binary2")
    return out.getvalue()


def _xp_csv(rows: pl.DataFrame) -> bytes:
    lines = [",".join(rows.columns)]
    for row in rows.iter_rows():
        cells = []
        for value in row:
            if isinstance(value, list | tuple | np.ndarray | pl.Series):
                inner = ", ".join("null" if v is None else repr(float(v)) for v in value)
                cells.append(f'"({inner})"')
            else:
                cells.append("" if value is None else str(value))
        lines.append(",".join(cells))
    return ("\n".join(lines) + "\n").encode()


def _astropy_table(frame: pl.DataFrame, *, masked_cells: bool = False):
    from astropy.table import MaskedColumn, Table

    table = Table()
    for name in frame.columns:
        series = frame[name]
        if isinstance(series.dtype, pl.Array | pl.List):
            cells = np.empty(series.len(), dtype=object)
            for k, value in enumerate(series.to_list()):
                cells[k] = np.array([np.nan if v is None else v for v in value or []])
                if "error" in name or "correlation" in name:
                    cells[k] = cells[k].astype(np.float32)
                if masked_cells:
                    cells[k] = np.ma.masked_invalid(cells[k])
            table[name] = cells
        elif series.dtype == pl.String:
            table[name] = np.array(series.fill_null("").to_list(), dtype=str)
        else:
            mask = series.is_null().to_numpy()
            values = series.to_numpy() if not mask.any() else series.fill_null(0).to_numpy()
            table[name] = MaskedColumn(values, mask=mask) if mask.any() else values
    return table


def votable_bytes(frame: pl.DataFrame, *, ids: bool = True) -> bytes:
    """A query result as the archive writes it: BINARY2, and (``ids``) every FIELD with an
    upper-case ``ID`` beside its ``name`` plus a DataLink service descriptor, as the real
    archive does for ``source_id`` (a client reading columns by ID gets ``SOURCE_ID``)."""
    from astropy.io.votable import from_table
    from astropy.io.votable.tree import Param, Resource

    vot = from_table(_astropy_table(frame))
    if ids:
        for field in vot.get_first_table().fields:
            field.ID = field.name.upper()
        service = Resource(type="meta", utype="adhoc:service")
        service.params.append(
            Param(vot, name="accessURL", datatype="char", arraysize="*", value=_LINKS_URL)
        )
        vot.resources.append(service)
    out = io.BytesIO()
    vot.to_xml(out, tabledata_format="binary2")
    return out.getvalue()


_LINKS_URL = "https://gea.esac.esa.int/data-server/datalink/links"


_FROM_ITEM = re.compile(
    r"(?:^|\s+(?:INNER\s+)?JOIN\s+)(?P<table>[\w.]+)(?:\s+AS)?\s+(?P<alias>\w+)"
    r"(?:\s+ON\s+(?P<left>\w+\.\w+)\s*=\s*(?P<right>\w+\.\w+))?",
    re.IGNORECASE,
)


def execute_adql(query: str, uploads: dict, tables: dict) -> tuple[pl.DataFrame, int | None]:
    """Run the ADQL subset; return the rows and the ``TOP n`` limit (None if absent)."""
    pattern = r"\s*SELECT\s+(?:TOP\s+(\d+)\s+)?(.+?)\s+FROM\s+(.+?)\s*;?\s*$"
    match = re.match(pattern, query, re.I | re.S)
    if not match:
        raise ValueError("Unsupported ADQL (expected SELECT [TOP n] ... FROM ...)")
    top = int(match.group(1)) if match.group(1) else None
    items, from_clause = match.group(2), " ".join(match.group(3).split())
    frame, pos = None, 0
    for item in _FROM_ITEM.finditer(from_clause):
        if item.start() != pos:
            break
        pos = item.end()
        right = _lookup(item.group("table"), uploads, tables)
        alias = item.group("alias")
        right = right.rename({c: f"{alias}.{c}" for c in right.columns})
        if frame is None:
            frame = right
            continue
        if not item.group("left"):
            raise ValueError(f"JOIN {item.group('table')} needs an ON condition")
        keys = [item.group("left"), item.group("right")]
        new = [k for k in keys if k.split(".")[0] == alias]
        old = [k for k in keys if k.split(".")[0] != alias]
        if len(new) != 1 or len(old) != 1:
            raise ValueError(f"Bad ON condition: {' = '.join(keys)}")
        _need(frame, old[0])
        _need(right, new[0])
        frame = frame.join(right, left_on=old[0], right_on=new[0], how="inner", coalesce=False)
    if frame is None or pos != len(from_clause):
        raise ValueError(f"Unsupported FROM clause near: {from_clause[pos : pos + 40]!r}")
    return frame.select(_select_items(items, frame)), top


def _lookup(name: str, uploads: dict, tables: dict) -> pl.DataFrame:
    lower = name.lower()
    if lower.startswith("tap_upload."):
        frame = uploads.get(lower.split(".", 1)[1])
    else:
        frame = tables.get(lower)
    if frame is None:
        raise ValueError(f"Table not found: {name}")
    return frame


def _need(frame: pl.DataFrame, column: str) -> None:
    if column not in frame.columns:
        raise ValueError(f"Column not found: {column}")


def _select_items(items: str, frame: pl.DataFrame) -> list[pl.Expr]:
    exprs = []
    for raw in items.split(","):
        parts = raw.split()
        if len(parts) == 3 and parts[1].upper() == "AS":
            column, name = parts[0], parts[2]
        elif len(parts) == 1:
            column, name = parts[0], parts[0].split(".")[-1]
        else:
            raise ValueError(f"Unsupported select item: {raw.strip()!r}")
        _need(frame, column)
        exprs.append(pl.col(column).alias(name))
    return exprs


def parse_form(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """Form fields and uploaded files of a POST body (url-encoded or multipart)."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/form-data") or not match:
        parsed = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
        return {k: v[-1] for k, v in parsed.items()}, {}
    fields, uploads = {}, {}
    for part in body.split(b"--" + match.group(1).encode())[1:]:
        if part.startswith(b"--"):
            break
        head, _, content = part.partition(b"\r\n\r\n")
        content = content.removesuffix(b"\r\n")
        disposition = head.decode(errors="replace")
        name = re.search(r'name="([^"]*)"', disposition)
        if name is None:
            continue
        if re.search(r'filename="', disposition):
            uploads[name.group(1)] = content
        else:
            fields[name.group(1)] = content.decode()
    return fields, uploads


def upload_tables(fields: dict[str, str], files: dict[str, bytes]) -> dict[str, pl.DataFrame]:
    from astropy.table import Table

    tables = {}
    for spec in filter(None, fields.get("UPLOAD", "").split(";")):
        name, _, ref = spec.partition(",")
        key = ref.removeprefix("param:")
        if key not in files:
            raise ValueError(f"Upload {name}: no file part {key!r}")
        table = Table.read(io.BytesIO(files[key]), format="votable")
        tables[name.lower()] = pl.DataFrame({c: np.asarray(table[c]) for c in table.colnames})
    return tables
