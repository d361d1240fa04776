"""The input CSV's every rule, the results writer, and properties of both."""

from __future__ import annotations

import codecs
import csv
import io
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgsvc.pipeline.parse import (
    CsvError,
    CsvLimits,
    CsvProblem,
    ParsedCsv,
    parse_csv,
)
from imgsvc.pipeline.results import results_header, results_row, sized_columns, write_results

LIMITS = CsvLimits()
HEADER = "S. No.,Product Name,Input Image Urls"
URLS = "Input Image Urls"

Found = tuple[int | None, str | None, str]


def parse(text: str, limits: CsvLimits = LIMITS) -> ParsedCsv:
    return parse_csv(text.encode(), limits)


def problems_of(data: str | bytes, limits: CsvLimits = LIMITS) -> list[Found]:
    raw = data.encode() if isinstance(data, str) else data
    with pytest.raises(CsvError) as info:
        parse_csv(raw, limits)
    return [(p.line, p.column, p.message) for p in info.value.problems]


def where(data: str | bytes, limits: CsvLimits = LIMITS) -> list[tuple[int | None, str | None]]:
    return [(line, column) for line, column, _ in problems_of(data, limits)]


# --- reading -------------------------------------------------------------------------------


def test_original_readme_example_unquoted() -> None:
    parsed = parse(
        "S. No.,Product Name,Input Image Urls\n"
        "1,SKU1,https://example.com/image1.jpg,https://example.com/image2.jpg\n"
        "2,SKU2,https://example.com/image3.jpg\n"
    )
    assert parsed.header == ("S. No.", "Product Name", "Input Image Urls")
    first, second = parsed.products
    assert (first.line, first.serial_number, first.product_name) == (2, "1", "SKU1")
    assert first.urls == ("https://example.com/image1.jpg", "https://example.com/image2.jpg")
    assert first.cells == (
        "1",
        "SKU1",
        "https://example.com/image1.jpg,https://example.com/image2.jpg",
    )
    assert (second.line, second.serial_number, second.product_name) == (3, "2", "SKU2")
    assert second.urls == ("https://example.com/image3.jpg",)
    assert second.cells == ("2", "SKU2", "https://example.com/image3.jpg")
    assert parsed.total_images == 3


def test_quoted_cells_with_commas_and_newlines_shift_later_lines() -> None:
    parsed = parse(
        f"{HEADER}\r\n"
        '1,"Shoe, red","http://a.com/1.jpg, http://a.com/2.jpg"\r\n'
        '2,"Hat\nwith\nlines","http://a.com/3.jpg\nhttp://a.com/4.jpg"\r\n'
        "3,Sock,http://a.com/5.jpg\r\n"
    )
    lines = [p.line for p in parsed.products]
    assert lines == [2, 3, 7]
    assert [p.product_name for p in parsed.products] == ["Shoe, red", "Hat\nwith\nlines", "Sock"]
    assert parsed.products[0].urls == ("http://a.com/1.jpg", "http://a.com/2.jpg")
    assert parsed.products[0].cells[2] == "http://a.com/1.jpg, http://a.com/2.jpg"
    assert parsed.products[1].urls == ("http://a.com/3.jpg", "http://a.com/4.jpg")


def test_problem_after_multiline_cell_has_the_editor_line() -> None:
    text = f'{HEADER}\n1,"a\nb\nc",http://a.com/x\n2,Sock,ftp://a.com/x\n'
    assert problems_of(text) == [(5, URLS, "ftp://a.com/x is not an http or https URL")]


def test_urls_separated_by_whitespace_and_commas() -> None:
    parsed = parse(f'{HEADER}\n1,A,"http://a/1  http://a/2,,\thttp://a/3 , "\n')
    assert parsed.products[0].urls == ("http://a/1", "http://a/2", "http://a/3")


def test_utf8_bom_is_dropped() -> None:
    parsed = parse_csv(codecs.BOM_UTF8 + f"{HEADER}\n1,Café,http://a/x\n".encode(), LIMITS)
    assert parsed.header[0] == "S. No."
    assert parsed.products[0].product_name == "Café"


@pytest.mark.parametrize("serial", ["S. No.", "S No", "SNo", "Serial Number", "s.no", "Sr. No."])
@pytest.mark.parametrize("name", ["Product Name", " PRODUCT  NAME ", "product_name"])
@pytest.mark.parametrize("urls", ["Input Image Urls", "input_image_urls", "Image URLs"])
def test_header_aliases(serial: str, name: str, urls: str) -> None:
    parsed = parse(f"{serial},{name},{urls}\n7,Shoe,http://a/x\n")
    assert parsed.header == (serial, name, urls)
    assert parsed.products[0].serial_number == "7"
    assert parsed.products[0].product_name == "Shoe"


def test_extra_columns_are_passed_through_in_order() -> None:
    parsed = parse(
        "Brand,S. No.,Colour,Product Name,Input Image Urls,Notes\n"
        "Acme,1,red,Shoe,http://a/x,fragile\n"
    )
    assert parsed.header == (
        "Brand",
        "S. No.",
        "Colour",
        "Product Name",
        "Input Image Urls",
        "Notes",
    )
    assert parsed.products[0].cells == ("Acme", "1", "red", "Shoe", "http://a/x", "fragile")
    assert problems_of("Brand,S. No.,Product Name,Input Image Urls\nAcme,2\n") == [
        (2, "Product Name", "the product name is empty"),
        (2, URLS, "the row has no image URLs"),
    ]


def test_short_rows_are_padded() -> None:
    parsed = parse(f"{HEADER},Notes\n1,Shoe,http://a/x\n")
    assert parsed.products[0].cells == ("1", "Shoe", "http://a/x", "")


def test_spill_when_url_column_is_not_last() -> None:
    parsed = parse(
        "S. No.,Input Image Urls,Product Name,Notes\n"
        "1,http://a/1,http://a/2,http://a/3,Shoe,fragile\n"
        "2,http://a/4,Hat,\n"
    )
    first, second = parsed.products
    assert first.urls == ("http://a/1", "http://a/2", "http://a/3")
    assert first.cells == ("1", "http://a/1,http://a/2,http://a/3", "Shoe", "fragile")
    assert (first.product_name, second.product_name) == ("Shoe", "Hat")
    assert second.cells == ("2", "http://a/4", "Hat", "")


def test_trailing_commas_are_not_urls() -> None:
    parsed = parse(
        "S. No.,Input Image Urls,Product Name,\n1,http://a/1,Shoe,,,\n2,http://a/2,http://a/3,Hat,\n"
    )
    assert parsed.header == ("S. No.", "Input Image Urls", "Product Name")
    assert [p.urls for p in parsed.products] == [("http://a/1",), ("http://a/2", "http://a/3")]
    assert parsed.products[1].cells == ("2", "http://a/2,http://a/3", "Hat")


def test_blank_lines_are_skipped_everywhere() -> None:
    parsed = parse(f"\n  \n,,\n{HEADER}\n\n1,A,http://a/1\n , ,\n\n2,B,http://a/2\n\n")
    assert [p.line for p in parsed.products] == [6, 9]
    assert problems_of(f"\n\n{HEADER}\n\n1,A,ftp://a\n") == [
        (5, URLS, "ftp://a is not an http or https URL")
    ]


def test_duplicate_serial_numbers_are_kept_in_order() -> None:
    parsed = parse(f"{HEADER}\n1,A,http://a/1\n1,B,http://a/2\n1,C,http://a/2\n")
    assert [p.product_name for p in parsed.products] == ["A", "B", "C"]
    assert parsed.total_images == 3


def test_serial_and_name_are_stripped_but_cells_kept_as_written() -> None:
    product = parse(f"{HEADER}\n 1 ,  Shoe ,http://a/x\n").products[0]
    assert (product.serial_number, product.product_name) == ("1", "Shoe")
    assert product.cells == (" 1 ", "  Shoe ", "http://a/x")


def test_existing_output_column_is_dropped() -> None:
    parsed = parse(
        "S. No.,Product Name,Input Image Urls,Output Image Urls,Notes\n"
        '1,Shoe,http://a/x,"http://me/1.jpg",keep\n'
    )
    assert parsed.header == ("S. No.", "Product Name", "Input Image Urls", "Notes")
    assert parsed.products[0].cells == ("1", "Shoe", "http://a/x", "keep")


def test_all_problems_are_reported_at_once() -> None:
    text = (
        "Sr No,Name of thing,Product Name,Image URLs\n"
        "1,x,Shoe,http://a/ok\n"
        ",x,,\n"
        "3,x,Hat,ftp://a/x gopher://b\n"
        '4,x,Sock,"http://a/ok,https://"\n'
    )
    assert problems_of(text) == [
        (3, "Sr No", "the serial number is empty"),
        (3, "Product Name", "the product name is empty"),
        (3, "Image URLs", "the row has no image URLs"),
        (4, "Image URLs", "ftp://a/x is not an http or https URL"),
        (4, "Image URLs", "gopher://b is not an http or https URL"),
        (5, "Image URLs", "https:// has no host"),
    ]


def test_error_detail_and_problem_dict() -> None:
    with pytest.raises(CsvError) as info:
        parse(f"{HEADER}\n1,A,ftp://x\n2,,http://a/1\n3,C,\n")
    assert info.value.detail == (
        "the CSV has 3 problems; the first: line 2, Input Image Urls:"
        " ftp://x is not an http or https URL"
    )
    assert str(info.value) == info.value.detail
    assert info.value.problems[1].as_dict() == {
        "line": 3,
        "column": "Product Name",
        "message": "the product name is empty",
    }
    assert CsvProblem(None, None, "the file is empty").as_dict() == {"message": "the file is empty"}


def test_problems_stop_at_one_hundred() -> None:
    text = HEADER + "\n" + "".join(f"{i},A,ftp://x\n" for i in range(500))
    with pytest.raises(CsvError) as info:
        parse(text)
    assert len(info.value.problems) == 100
    assert info.value.problems[-1].line == 101
    assert info.value.detail.startswith("the CSV has at least 100 problems")


def test_missing_columns_are_named_with_the_header_found() -> None:
    assert problems_of("Serial,Name,Input Image Urls\n1,A,http://a/x\n") == [
        (
            1,
            None,
            'the header on line 1 lacks the required column(s) "S. No.", "Product Name";'
            ' found: "Serial", "Name", "Input Image Urls"',
        )
    ]


def test_missing_header_hints_that_the_first_row_is_data() -> None:
    [(line, column, message)] = problems_of("1,SKU1,http://a/x\n2,SKU2,http://a/y\n")
    assert (line, column) == (1, None)
    assert message.endswith("the first row looks like data, and the file needs a header row")


def test_required_column_twice() -> None:
    assert problems_of("S. No.,Product Name,Input Image Urls,Image URLs\n1,A,http://a/x,\n") == [
        (1, "Image URLs", "this column appears twice (columns 3 and 4)")
    ]


def test_invalid_utf8_names_the_line() -> None:
    data = f"{HEADER}\n1,A,http://a/x\n".encode() + b"2,Caf\xe9,http://a/y\n"
    assert problems_of(data) == [
        (
            3,
            None,
            "line 3 is not valid UTF-8 (byte 0xE9); save the file as UTF-8"
            " (it may be Windows-1252 or Latin-1)",
        )
    ]


def test_invalid_utf8_line_counts_cr_and_crlf_breaks() -> None:
    data = codecs.BOM_UTF8 + b"a\r\nb\rc\n\xff"
    assert where(data) == [(4, None)]


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (f"{HEADER}\n1,A,http://a/x\n".encode("utf-16"), "UTF-16"),
        (f"{HEADER}\n1,A,http://a/x\n".encode("utf-16-be"), "UTF-16"),
        (f"{HEADER}\n1,A,http://a/x\n".encode("utf-16-le"), "UTF-16"),
        (f"{HEADER}\n1,A,http://a/x\n".encode("utf-32"), "UTF-32"),
    ],
)
def test_utf16_and_utf32_say_to_save_as_utf8(data: bytes, name: str) -> None:
    assert problems_of(data) == [
        (None, None, f"the file is {name}, not UTF-8; save it as UTF-8 (CSV UTF-8)")
    ]


def test_nul_byte_names_the_line() -> None:
    data = f"{HEADER}\n1,A,http://a/x\n".encode() + b"2,B\x00,http://a/y\n"
    assert problems_of(data) == [
        (3, None, "line 3 contains a NUL byte; the file looks binary, not CSV")
    ]


def test_field_size_limit_stops_reading() -> None:
    limits = CsvLimits(max_field_bytes=1024)
    text = f'{HEADER}\n1,A,http://a/x\n2,"{"n" * 600}\n{"n" * 600}",http://a/y\n3,,\n'
    assert problems_of(text, limits) == [
        (3, None, "a field on line 3 is larger than 1 KiB (IMGSVC_MAX_FIELD_BYTES)")
    ]
    big = f"{HEADER}\n1,A,http://a/x\n\n4,B,http://a/{'y' * 2_000_000}\n"
    assert problems_of(big) == [
        (4, None, "a field on line 4 is larger than 1 MiB (IMGSVC_MAX_FIELD_BYTES)")
    ]


def test_field_size_limit_keeps_earlier_problems() -> None:
    text = f"{HEADER}\n1,A,ftp://x\n2,B,http://a/{'y' * 2000}\n"
    assert where(text, CsvLimits(max_field_bytes=1000)) == [(2, URLS), (3, None)]


def test_row_limit() -> None:
    limits = CsvLimits(max_rows=2)
    assert len(parse(f"{HEADER}\n1,A,http://a/1\n2,B,http://a/2\n", limits).products) == 2
    text = f"{HEADER}\n1,A,http://a/1\n2,B,http://a/2\n\n3,C,http://a/3\n4,D,ftp://x\n"
    assert problems_of(text, limits) == [
        (5, None, "the file has more than 2 product rows; the limit is 2 (IMGSVC_MAX_ROWS)")
    ]
    assert problems_of(text, CsvLimits(max_rows=3)) == [
        (6, None, "the file has more than 3 product rows; the limit is 3 (IMGSVC_MAX_ROWS)")
    ]


def test_row_limit_message_formats_thousands() -> None:
    [(_, _, message)] = problems_of(
        HEADER + "\n" + "".join(f"{i},A,http://a/{i}\n" for i in range(1001)),
        CsvLimits(max_rows=1000),
    )
    assert message == (
        "the file has more than 1,000 product rows; the limit is 1,000 (IMGSVC_MAX_ROWS)"
    )


def test_urls_per_row_limit() -> None:
    limits = CsvLimits(max_urls_per_row=3)
    assert parse(f"{HEADER}\n1,A,http://a/1,http://a/2,http://a/3\n", limits).total_images == 3
    text = f"{HEADER}\n1,A,http://a/1,http://a/2,http://a/3,http://a/4\n"
    assert problems_of(text, limits) == [
        (2, URLS, "the row has 4 image URLs; the limit is 3 (IMGSVC_MAX_URLS_PER_ROW)")
    ]


def test_url_length_limit() -> None:
    ok = "http://a.com/" + "x" * (2048 - 13)
    assert parse(f"{HEADER}\n1,A,{ok}\n").products[0].urls == (ok,)
    long = ok + "y"
    [(line, column, message)] = problems_of(f"{HEADER}\n1,A,{long}\n")
    assert (line, column) == (2, URLS)
    assert message.endswith(" is 2,049 characters long; the limit is 2,048")
    assert message.startswith("http://a.com/xxx")
    assert len(message) < 140  # the URL is shortened in the message


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://x", "ftp://x is not an http or https URL"),
        ("javascript:alert(1)", "javascript:alert(1) is not an http or https URL"),
        ("file:///etc/passwd", "file:///etc/passwd is not an http or https URL"),
        ("data:image/png;base64", "data:image/png;base64 is not an http or https URL"),
        (
            "www.example.com/a.jpg",
            "www.example.com/a.jpg is not an http or https URL"
            " (it should start with https:// or http://)",
        ),
        ("http://", "http:// has no host"),
        ("https:///a.jpg", "https:///a.jpg has no host"),
        ("https:example.com/a.jpg", "https:example.com/a.jpg has no host"),
        ("http://user@:80/a", "http://user@:80/a has no host"),
        (
            "http://a.com:99999/x",
            "http://a.com:99999/x is not a valid URL (Port out of range 0-65535)",
        ),
        (
            "http://a.com:65536/x",
            "http://a.com:65536/x is not a valid URL (Port out of range 0-65535)",
        ),
        ("http://[::1/x", "http://[::1/x is not a valid URL (Invalid IPv6 URL)"),
        ("http://a.com/\x01x", "http://a.com/\\x01x contains a control or invisible character"),
        ("http://a.com/\u200bx", "http://a.com/\\u200bx contains a control or invisible character"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    assert problems_of(f'{HEADER}\n1,A,"http://ok.com/1 {url}"\n') == [(2, URLS, message)]


@pytest.mark.parametrize(
    "url",
    [
        "HTTP://EXAMPLE.COM/A.JPG",
        "https://example.com:8443/a.jpg?size=large&v=2#frag",
        "http://user:pw@example.com/a",
        "http://[2001:db8::1]:8080/a.jpg",
        "http://127.0.0.1:41234/images/7.jpg",
        "http://cdn.example:65535/a.jpg",
        "http://cdn.example:00080/a.jpg",
        "http://192.0.2.1/a",
        "https://bücher.example/ä.jpg",
        "https://example.com",
    ],
)
def test_good_urls(url: str) -> None:
    assert parse(f"{HEADER}\n1,A,{url}\n").products[0].urls == (url,)


def test_empty_serial_and_name() -> None:
    text = f"{HEADER}\n ,Shoe,http://a/x\n2,  ,http://a/y\n"
    assert problems_of(text) == [
        (2, "S. No.", "the serial number is empty"),
        (3, "Product Name", "the product name is empty"),
    ]


def test_row_without_urls() -> None:
    assert problems_of(f'{HEADER}\n1,A, , ,\n2,B,"  "\n') == [
        (2, URLS, "the row has no image URLs"),
        (3, URLS, "the row has no image URLs"),
    ]


@pytest.mark.parametrize("text", [HEADER, f"\n{HEADER}\n\n , \n"])
def test_header_without_rows(text: str) -> None:
    assert problems_of(text) == [(None, None, "the file has a header but no product rows")]


@pytest.mark.parametrize("data", [b"", codecs.BOM_UTF8])
def test_empty_file(data: bytes) -> None:
    assert problems_of(data) == [(None, None, "the file is empty")]


def test_file_of_blank_lines() -> None:
    assert problems_of("\r\n , \r\n\r\n") == [
        (None, None, "the file is empty (it has only blank lines)")
    ]


def test_quote_left_open_is_named() -> None:
    text = f'{HEADER}\n1,A,http://a/1\n2,"B,http://a/2\n3,C,http://a/3\n'
    assert problems_of(text) == [
        (3, URLS, "the row has no image URLs"),
        (
            3,
            None,
            'a quoted cell in the record starting on line 3 is never closed (");'
            " everything after it was read as one cell",
        ),
    ]


def test_quote_left_open_is_on_the_record_line() -> None:
    text = f'{HEADER}\n1,A,"http://a/1\n2,B,http://a/2\n'
    assert where(text)[-1] == (2, None)


def test_closed_multiline_last_record_is_fine() -> None:
    parsed = parse(f'{HEADER}\n1,"A\nB",http://a/1\n')
    assert parsed.products[0].product_name == "A\nB"


# --- writing -------------------------------------------------------------------------------


def read_back(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_write_results_round_trips() -> None:
    header = ["S. No.", "Product Name", "Input Image Urls", "Notes"]
    cells = ["1", 'Shoe, "red"\nsize 9', "http://a/1,http://a/2", "x"]
    out = io.StringIO(newline="")
    write_results(out, header, [(cells, [["http://me/1.jpg", "http://me/2.jpg"]])])
    text = out.getvalue()
    assert text.startswith("S. No.,Product Name,Input Image Urls,Notes,Output Image Urls\r\n")
    assert text.endswith("\r\n")
    assert read_back(text) == [
        [*header, "Output Image Urls"],
        [*cells, "http://me/1.jpg,http://me/2.jpg"],
    ]


def test_results_from_a_parsed_file_parse_again() -> None:
    parsed = parse(f'{HEADER},Notes\n1,"A, B",http://a/1,http://a/2,"x"\n')
    out = io.StringIO(newline="")
    rows = [(p.cells, [["http://me/1", None]]) for p in parsed.products]
    write_results(out, parsed.header, rows)
    again = parse_csv(out.getvalue().encode(), LIMITS)
    assert again.header == parsed.header
    assert again.products[0].cells == parsed.products[0].cells


def test_each_size_adds_a_column_in_the_order_given() -> None:
    columns = sized_columns("Output Image Urls", [1600, 300])
    out = io.StringIO(newline="")
    outputs = [
        ["http://me/a.jpg", None],
        ["http://me/a_1600.jpg", None],
        ["http://me/a_300.jpg", None],
    ]
    write_results(out, ["S. No."], [(["1"], outputs)], columns)
    assert read_back(out.getvalue()) == [
        ["S. No.", "Output Image Urls", "Output Image Urls 1600", "Output Image Urls 300"],
        ["1", "http://me/a.jpg,", "http://me/a_1600.jpg,", "http://me/a_300.jpg,"],
    ]


def test_failed_image_leaves_its_place_empty() -> None:
    assert results_row(["1", "A", "u"], ["http://a", None, "http://c"]) == [
        "1",
        "A",
        "u",
        "http://a,,http://c",
    ]
    assert results_row(["1"], [None, None]) == ["1", ","]


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),
        ("+1+1", "'+1+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("a=b", "a=b"),
        ("", ""),
        ("'quoted", "'quoted"),
    ],
)
def test_formula_injection_is_defused(cell: str, written: str) -> None:
    assert results_header(["S. No.", cell]) == ["S. No.", written, "Output Image Urls"]
    assert results_row([cell], ["http://a"]) == [written, "http://a"]
    out = io.StringIO(newline="")
    write_results(out, [cell], [([cell], [[None]])])
    assert read_back(out.getvalue()) == [[written, "Output Image Urls"], [written, ""]]


# --- properties and scale ------------------------------------------------------------------

_ANY_CHAR = st.characters(codec="utf-8", exclude_characters="\x00")
# Serials and names need something besides whitespace; build that in rather than filter.
_TEXT = st.tuples(
    st.text(_ANY_CHAR, max_size=8),
    st.characters(codec="utf-8", exclude_categories=["Cc", "Zs", "Zl", "Zp"]),
    st.text(_ANY_CHAR, max_size=8),
).map("".join)
_URL = st.builds(
    "{}://{}{}{}".format,
    st.sampled_from(["http", "https", "HTTPS"]),
    st.text("abcxyz019.-", min_size=1, max_size=12),
    st.sampled_from(["", ":8080", ":1"]),
    st.text("abz09/._~%;=()?#&-+!*'$@:", max_size=20).map(lambda p: "/" + p),
)
_PRODUCTS = st.lists(
    st.tuples(_TEXT, _TEXT, st.lists(_URL, min_size=1, max_size=5)), min_size=1, max_size=10
)


@settings(max_examples=200, deadline=None)
@given(_PRODUCTS, st.data())
def test_property_csv_writer_output_parses_back(
    products: list[tuple[str, str, list[str]]], data: st.DataObject
) -> None:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(HEADER.split(","))
    for serial, name, urls in products:
        separator = data.draw(st.sampled_from([",", " ", ", ", "\n"]))
        writer.writerow([serial, name, separator.join(urls)])
    parsed = parse_csv(out.getvalue().encode(), LIMITS)
    assert [p.serial_number for p in parsed.products] == [s.strip() for s, _, _ in products]
    assert [p.product_name for p in parsed.products] == [n.strip() for _, n, _ in products]
    assert [list(p.urls) for p in parsed.products] == [urls for _, _, urls in products]


def _parse_or_csv_error(data: bytes) -> None:
    error: CsvError | None = None
    try:
        parse_csv(data, CsvLimits(max_rows=50, max_urls_per_row=5, max_field_bytes=200))
    except CsvError as exc:  # anything else fails the test
        error = exc
    assert error is None or (error.problems and error.detail)


@settings(max_examples=200, deadline=None)
@given(st.binary())
def test_property_arbitrary_bytes_raise_only_csv_error(data: bytes) -> None:
    _parse_or_csv_error(data)


@settings(max_examples=200, deadline=None)
@given(st.text().map(lambda text: text.encode("utf-8", "surrogatepass")))
def test_property_arbitrary_text_raises_only_csv_error(data: bytes) -> None:
    _parse_or_csv_error(data)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet='ab1,"\r\n \t:/hH[]@\u200b\x00é=', max_size=200))
def test_property_csv_like_text_raises_only_csv_error(body: str) -> None:
    _parse_or_csv_error(f"{HEADER}\n{body}".encode())


def _reference_url_ok(url: str) -> bool:
    """An independent statement of the URL rule, to check the fast path against."""
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in url) or "\u200b" in url:
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - reading it checks the port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


@settings(max_examples=200, deadline=None)
@given(
    st.from_regex(
        "[hHf][tT]{2}[pP][sS]?:(//)?[a-z0-9.:@\\[\\]_\x01\u200b\u00e9-]{0,12}"
        "([/?#][a-z0-9%:\x7f]{0,8})?",
        fullmatch=True,
    )
)
def test_property_url_rule_matches_reference(url: str) -> None:
    text = f'{HEADER}\n1,A,"{url}"\n'
    try:
        parse(text)
        accepted = True
    except CsvError:
        accepted = False
    assert accepted == _reference_url_ok(url)


def test_hundred_thousand_rows_parse() -> None:
    rows = "".join(
        f"{i},SKU{i},https://cdn.example.com/{i}/a.jpg,https://cdn.example.com/{i}/b.jpg,"
        f"https://cdn.example.com/{i}/c.jpg\r\n"
        for i in range(100_000)
    )
    parsed = parse(f"{HEADER}\r\n{rows}")
    assert len(parsed.products) == 100_000
    assert parsed.total_images == 300_000
    assert parsed.products[-1].line == 100_001
