"""Reads a finance export workbook the way an accountant's tools would: openpyxl cell by cell
(formats included) and pandas sheet by sheet. Prints one JSON object for the Rust test to
compare with what the core charged."""

import json
import sys

import openpyxl
import pandas as pd


def main(path):
    book = openpyxl.load_workbook(path, read_only=False)
    sales = book["Sales lines"]
    header = [cell.value for cell in sales[1]]
    col = {name: i for i, name in enumerate(header)}
    totals = {"Line total": 0, "Taxable value": 0, "CGST": 0, "SGST/UTGST": 0, "IGST": 0}
    dates_are_dates = True
    for row in sales.iter_rows(min_row=2):
        for name in totals:
            totals[name] += round(row[col[name]].value * 100)
        dates_are_dates &= row[col["Invoice date"]].is_date
    frames = pd.read_excel(path, sheet_name=None)
    print(json.dumps({
        "sheets": book.sheetnames,
        "paise": totals,
        "header_bold": all(cell.font.bold for cell in sales[1]),
        "frozen": sales.freeze_panes,
        "autofilter": sales.auto_filter.ref,
        "amount_format": sales.cell(row=2, column=col["Line total"] + 1).number_format,
        "dates_are_dates": dates_are_dates,
        "pandas_rows": {name: len(frame) for name, frame in frames.items()},
    }))


if __name__ == "__main__":
    main(sys.argv[1])
